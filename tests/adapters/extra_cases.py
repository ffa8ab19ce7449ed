"""Contract-suite cases of the asynchronous providers (picked up by ``conftest._cases``)."""

from __future__ import annotations

from adapters.base import Credentials, Outcome, ProviderAdapter
from tests.adapters.conftest import ProviderCase

XENDIT_SECRET_KEY = "xnd_development_simulator"
XENDIT_CALLBACK_TOKEN = "xendit-callback-token-simulator"


def _xendit(base_url: str, timeout: float) -> ProviderAdapter:
    from adapters.xendit import XenditAdapter

    return XenditAdapter(
        Credentials(api_key=XENDIT_SECRET_KEY, webhook_secret=XENDIT_CALLBACK_TOKEN, base_url=base_url),
        total_timeout=timeout,
    )


SEPA_HMAC_KEY = "sepa-simulator-hmac-key"
SEPA_EXTRA = {
    "creditor_name": "Switch Merchant GmbH",
    "creditor_iban": "DE89370400440532013000",
    "creditor_bic": "COBADEFFXXX",
    "creditor_id": "DE98ZZZ09999999999",
}
SEPA_DEBTOR = {"iban": "NL91ABNA0417164300", "mandate_id": "MNDT-2024-001", "mandate_date": "2024-01-15"}


def _sepa(base_url: str, timeout: float) -> ProviderAdapter:
    from adapters.sepa import SepaAdapter

    return SepaAdapter(
        Credentials(api_key="sepa-gateway-token", webhook_secret=SEPA_HMAC_KEY, base_url=base_url, extra=SEPA_EXTRA),
        total_timeout=timeout,
    )


PINGPONG_SALT = "AC09D35CC78CA5E8491B77C5"
PINGPONG_ACC_ID = "2023120712300910285520"


def _pingpong(base_url: str, timeout: float) -> ProviderAdapter:
    from adapters.pingpong import PingPongAdapter

    return PingPongAdapter(
        Credentials(api_key=PINGPONG_SALT, account_id=PINGPONG_ACC_ID, base_url=base_url), total_timeout=timeout
    )


LIANLIAN_KEY = "lianlian-simulator-signing-key"


def _lianlian(base_url: str, timeout: float) -> ProviderAdapter:
    from adapters.lianlian import LianLianAdapter

    return LianLianAdapter(
        Credentials(api_key="ll-api-token", webhook_secret=LIANLIAN_KEY, account_id="LL-MERCHANT-1", base_url=base_url),
        total_timeout=timeout,
    )


def extra_cases() -> list[ProviderCase]:
    """The cases of the e-wallet, SEPA and cross-border adapters."""
    from adapters.lianlian.transformers import FAILURE_MAP as LIANLIAN_FAILURES
    from adapters.pingpong.transformers import RESULT_CODE_MAP
    from adapters.sepa.transformers import REASON_MAP
    from adapters.xendit.transformers import FAILURE_MAP

    return [
        ProviderCase(
            "xendit",
            _xendit,
            "PHP",
            125_000,
            dict(FAILURE_MAP),
            method_type="grabpay",
            supports_manual_capture=False,
            # Charges are found by their ewc_ id only; a lost create answer leaves it unknown.
            sync_by_attempt=False,
            authorize_outcome=Outcome.REQUIRES_ACTION,
            signs_body=False,
            credential_headers=("x-callback-token",),
        ),
        ProviderCase(
            "sepa",
            _sepa,
            "EUR",
            125_000,
            # Every R-code arrives as a return of the settled debit.
            dict(REASON_MAP),
            method_type="sepa_debit",
            details=SEPA_DEBTOR,
            supports_manual_capture=False,
            # The refund is a credit transfer: submitted, settled later.
            refund_outcome=Outcome.PENDING,
            authorize_outcome=Outcome.PENDING,
            credential_headers=("Sepa-Signature",),
        ),
        ProviderCase(
            "pingpong",
            _pingpong,
            "USD",
            125_000,
            # The codes a failed payment can carry (not the success and processing codes).
            {c: o for c, o in RESULT_CODE_MAP.items() if c not in {"000000", "001000", "002000"}},
            method_type="hosted_checkout",
            supports_manual_capture=False,
            authorize_outcome=Outcome.REQUIRES_ACTION,
        ),
        ProviderCase(
            "lianlian",
            _lianlian,
            "USD",
            125_000,
            dict(LIANLIAN_FAILURES),
            method_type="hosted_checkout",
            supports_manual_capture=False,
            authorize_outcome=Outcome.REQUIRES_ACTION,
            credential_headers=("LLPAY-Signature",),
        ),
    ]
