"""Payment methods: validate what the merchant sent and turn it into what an adapter needs.

Card numbers and CVCs are only placed into the in-memory :class:`CardData` for the provider call;
what is stored and shown is the masked :class:`PaymentMethodOut`.
"""

from __future__ import annotations

import datetime

import msgspec
from stdnum import iban as stdnum_iban
from stdnum.exceptions import ValidationError as StdnumError

from adapters.base import CardData
from switch.errors import PaymentError
from switch.payments.model import (
    CardOut,
    CardPaymentMethodIn,
    HostedCheckoutPaymentMethodIn,
    KonbiniPaymentMethodIn,
    PaymentCreate,
    PaymentMethodOut,
    SepaDebitOut,
    SepaDebitPaymentMethodIn,
    WalletOut,
    WalletPaymentMethodIn,
)
from switch.vault.cards import CardRejected, Vault, validate_card

# Currencies each method can be charged in, where the method itself restricts them.
_METHOD_CURRENCIES = {"konbini": frozenset({"JPY"}), "sepa_debit": frozenset({"EUR"})}


class MethodDetails(msgspec.Struct, kw_only=True):
    """A payment method ready for routing and for an adapter call."""

    method_type: str
    shown: PaymentMethodOut
    card: CardData | None = None
    details: dict[str, str] = msgspec.field(default_factory=dict)
    return_url: str | None = None
    holder_name: str | None = None


def prepare_method(request: PaymentCreate, vault: Vault) -> MethodDetails:
    """Validate the payment method of ``request`` and return its routing and adapter form.

    Raises:
        PaymentError: ``invalid_number``, ``expired_card``, ``invalid_iban`` or
            ``currency_not_supported_by_method`` (400), naming the field.
    """
    method = request.payment_method
    allowed = _METHOD_CURRENCIES.get(_type_of(method))
    if allowed is not None and request.currency not in allowed:
        raise PaymentError(
            "invalid",
            "currency_not_supported_by_method",
            f"{_type_of(method)} payments must be in {', '.join(sorted(allowed))}",
            "currency",
        )
    if isinstance(method, CardPaymentMethodIn):
        card = method.card
        try:
            validate_card(card.number, card.exp_month, card.exp_year)
        except CardRejected as rejected:
            raise PaymentError("invalid", rejected.code, rejected.message, rejected.param) from None
        summary = vault.summarize(card.number, card.exp_month, card.exp_year)
        return MethodDetails(
            method_type="card",
            shown=PaymentMethodOut(type="card", card=CardOut(**msgspec.structs.asdict(summary))),
            card=CardData(
                number=card.number,
                exp_month=card.exp_month,
                exp_year=card.exp_year,
                cvc=card.cvc,
                holder_name=card.holder_name,
                brand=summary.brand,
            ),
            holder_name=card.holder_name,
        )
    if isinstance(method, WalletPaymentMethodIn):
        return MethodDetails(
            method_type=method.wallet.type,
            shown=PaymentMethodOut(type="wallet", wallet=WalletOut(type=method.wallet.type)),
            return_url=method.wallet.return_url,
        )
    if isinstance(method, HostedCheckoutPaymentMethodIn):
        checkout = method.hosted_checkout
        return MethodDetails(
            method_type="hosted_checkout",
            shown=PaymentMethodOut(type="hosted_checkout"),
            details={"cancel_url": checkout.cancel_url} if checkout.cancel_url else {},
            return_url=checkout.return_url,
        )
    if isinstance(method, KonbiniPaymentMethodIn):
        details = {"expires_after_days": str(method.konbini.expires_after_days)}
        if method.konbini.product_description:
            details["product_description"] = method.konbini.product_description
        return MethodDetails(method_type="konbini", shown=PaymentMethodOut(type="konbini"), details=details)
    assert isinstance(method, SepaDebitPaymentMethodIn)
    debit = method.sepa_debit
    try:
        account = stdnum_iban.validate(debit.iban)
    except StdnumError:
        raise PaymentError(
            "invalid",
            "invalid_iban",
            "the IBAN is not valid (format or check digits)",
            "payment_method.sepa_debit.iban",
        ) from None
    if (debit.mandate_id is None) != (debit.mandate_date is None):
        raise PaymentError(
            "invalid",
            "parameter_missing",
            "mandate_id and mandate_date go together",
            "payment_method.sepa_debit.mandate_date"
            if debit.mandate_date is None
            else "payment_method.sepa_debit.mandate_id",
        )
    if debit.mandate_date is not None:
        try:
            datetime.date.fromisoformat(debit.mandate_date)
        except ValueError:
            raise PaymentError(
                "invalid", "parameter_invalid", "mandate_date is not a date", "payment_method.sepa_debit.mandate_date"
            ) from None
    details = {"iban": account, "owner_name": debit.holder_name}
    for name in ("bic", "mandate_id", "mandate_date"):
        value = getattr(debit, name)
        if value is not None:
            details[name] = value
    return MethodDetails(
        method_type="sepa_debit",
        shown=PaymentMethodOut(
            type="sepa_debit",
            sepa_debit=SepaDebitOut(
                country=account[:2], bank_code=account[4:8], last4=account[-4:], mandate_id=debit.mandate_id
            ),
        ),
        details=details,
        holder_name=debit.holder_name,
    )


def _type_of(method: object) -> str:
    return type(method).__struct_config__.tag  # type: ignore[attr-defined, no-any-return]
