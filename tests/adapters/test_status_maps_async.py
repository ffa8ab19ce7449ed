"""Table-driven checks of the asynchronous providers' status, failure and R-transaction maps.

Each row names a provider word or code and the outcome the cascade rules (reference 4.8) require:
hard never cascades, soft may be retried later on the same instrument, technical may cascade.
"""

from __future__ import annotations

import pytest

from adapters import registry
from adapters.base import Outcome
from adapters.lianlian import transformers as lianlian
from adapters.pingpong import transformers as pingpong
from adapters.sepa import transformers as sepa
from adapters.xendit import transformers as xendit

A, P, H, S, T = Outcome.APPROVED, Outcome.PENDING, Outcome.DECLINED_HARD, Outcome.DECLINED_SOFT, Outcome.TECHNICAL

TABLE = [
    (xendit.STATUS_MAP, "SUCCEEDED", A),
    (xendit.STATUS_MAP, "PENDING", P),
    (xendit.STATUS_MAP, "FAILED", H),
    (xendit.STATUS_MAP, "VOIDED", H),
    (xendit.STATUS_MAP, "REFUNDED", A),
    (xendit.FAILURE_MAP, "USER_DECLINED_PAYMENT", H),
    (xendit.FAILURE_MAP, "ACCOUNT_ACCESS_BLOCKED", H),
    (xendit.FAILURE_MAP, "INSUFFICIENT_BALANCE", S),
    (xendit.FAILURE_MAP, "MAXIMUM_LIMIT_REACHED", S),
    (xendit.FAILURE_MAP, "CHANNEL_UNAVAILABLE", T),
    (xendit.FAILURE_MAP, "CHANNEL_NOT_ACTIVATED", T),
    (xendit.FAILURE_MAP, "PARTNER_TIMEOUT_ERROR", T),
    (sepa.STATUS_MAP, "PDNG", P),
    (sepa.STATUS_MAP, "ACSC", A),
    (sepa.REASON_MAP, "AC01", H),
    (sepa.REASON_MAP, "AC04", H),
    (sepa.REASON_MAP, "AC06", H),
    (sepa.REASON_MAP, "AG01", H),
    (sepa.REASON_MAP, "AM04", S),
    (sepa.REASON_MAP, "AM05", H),
    (sepa.REASON_MAP, "MD01", H),
    (sepa.REASON_MAP, "MD06", H),
    (sepa.REASON_MAP, "MD07", H),
    (sepa.REASON_MAP, "MS02", H),
    (sepa.REASON_MAP, "MS03", S),
    (sepa.REASON_MAP, "RC01", H),
    (sepa.REASON_MAP, "RR01", H),
    (sepa.REASON_MAP, "RR02", H),
    (sepa.REASON_MAP, "RR03", T),
    (sepa.REASON_MAP, "RR04", H),
    (sepa.REASON_MAP, "SL01", H),
    (sepa.REASON_MAP, "FF01", T),
    (pingpong.STATUS_MAP, "SUCCESS", A),
    (pingpong.STATUS_MAP, "PROCESSING", P),
    (pingpong.STATUS_MAP, "CLOSED", H),
    (pingpong.RESULT_CODE_MAP, "202001", H),
    (pingpong.RESULT_CODE_MAP, "201000", H),
    (pingpong.RESULT_CODE_MAP, "301002", H),
    (pingpong.RESULT_CODE_MAP, "301003", S),
    (pingpong.RESULT_CODE_MAP, "301015", S),
    (pingpong.RESULT_CODE_MAP, "106001", T),
    (pingpong.RESULT_CODE_MAP, "600002", T),
    (lianlian.STATUS_MAP, "PS", A),
    (lianlian.STATUS_MAP, "WP", P),
    (lianlian.FAILURE_MAP, "43", H),
    (lianlian.FAILURE_MAP, "51", S),
    (lianlian.FAILURE_MAP, "96", T),
]


@pytest.mark.parametrize(("table", "code", "expected"), TABLE, ids=lambda v: v if isinstance(v, str) else "")
def test_async_provider_maps_follow_the_cascade_rules(table, code, expected) -> None:
    assert table[code] is expected


def test_sepa_reason_map_covers_every_listed_r_code() -> None:
    listed = {"AC01", "AC04", "AC06", "AG01", "AM04", "AM05", "MD01", "MD06", "MD07", "MS02", "MS03", "RC01"}
    listed |= {"RR01", "RR02", "RR03", "RR04", "SL01", "FF01"}
    assert listed <= set(sepa.REASON_MAP)


@pytest.mark.parametrize(
    ("classify", "unknown"),
    [
        (xendit.classify_failure, "SOMETHING_NEW"),
        (sepa.classify_reason, "ZZ99"),
        (pingpong.classify_code, "999999"),
        (lianlian.classify_failure, "ZZ"),
    ],
)
def test_unknown_codes_never_cascade(classify, unknown) -> None:
    assert classify(unknown) is H


@pytest.mark.parametrize("name", ["xendit", "sepa", "pingpong", "lianlian"])
def test_new_adapters_are_registered(name) -> None:
    adapter = registry.create(name)
    assert adapter.name == name


REVIEWED_TECHNICAL = {
    # Final FAILED charges: the channel, partner or our configuration failed; nothing was paid.
    "xendit.FAILURE_MAP": (
        xendit.FAILURE_MAP,
        {"API_VALIDATION_ERROR", "CHANNEL_NOT_ACTIVATED", "CHANNEL_UNAVAILABLE", "INVALID_API_KEY"}
        | {"INVALID_MERCHANT_CREDENTIALS", "PARTNER_TIMEOUT_ERROR", "SERVER_ERROR", "TIMEOUT_ERROR"}
        | {"UNSUPPORTED_CURRENCY"},
    ),
    # On a FAILED transaction: configuration, parameter, support and system failures (final).
    # The system ones are unknown when answered on the envelope instead (see below).
    "pingpong.RESULT_CODE_MAP": (
        pingpong.RESULT_CODE_MAP,
        {"101000", "101001", "101002", "102000", "103000", "104000", "106000", "106001", "106002", "106003"}
        | {"107001", "107002", "107003", "203000", "301001", "301006", "301012", "500000", "500001", "500002"}
        | {"500003", "500004", "500005", "500006", "500008", "500009", "600000", "600001", "600002"},
    ),
    # Issuer or switch unavailable (Visa 91/96) on a failed payment.
    "lianlian.FAILURE_MAP": (lianlian.FAILURE_MAP, {"91", "96"}),
    # Rejected files and set-up problems: the debit was not collected.
    "sepa.REASON_MAP": (sepa.REASON_MAP, {"AG02", "BE05", "CNOR", "DNOR", "ED05", "FF01", "RR03", "TM01"}),
}


@pytest.mark.parametrize("name", sorted(REVIEWED_TECHNICAL))
def test_every_technical_entry_is_reviewed(name: str) -> None:
    table, reviewed = REVIEWED_TECHNICAL[name]
    assert {k for k, v in table.items() if v is T} == reviewed


@pytest.mark.parametrize("code", sorted(pingpong.AMBIGUOUS_ENVELOPE_CODES))
def test_pingpong_system_failures_on_the_envelope_are_unknown(code: str) -> None:
    # Answered with no transaction, a system failure does not prove the request did nothing.
    assert pingpong.classify_envelope_code(code) is Outcome.UNKNOWN
    assert pingpong.classify_envelope_code("102000") is T
