"""Payment methods: validate what the merchant sent and turn it into what an adapter needs.

Card numbers and CVCs are only placed into the in-memory :class:`CardData` for the provider call;
what is stored and shown is the masked :class:`PaymentMethodOut`, and, for a new card, its sealed
form (:class:`SealedCard`) that the payment's final batch saves so the token can pay again. A
``card_token`` is opened from the vault only here, for the provider call, and only for the
merchant (and mode) that saved it.
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
    CardTokenPaymentMethodIn,
    HostedCheckoutPaymentMethodIn,
    KonbiniPaymentMethodIn,
    PaymentCreate,
    PaymentMethodOut,
    SepaDebitOut,
    SepaDebitPaymentMethodIn,
    WalletOut,
    WalletPaymentMethodIn,
)
from switch.vault.cards import CardRejected, CardSummary, OpenedCard, SealedCard, Vault, validate_card
from switch.vault.redaction import contains_pan
from switch.vault.store import VaultKeyMissing

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
    # A new card, sealed for the vault; written in the batch that finishes the payment.
    sealed: SealedCard | None = None


async def prepare_method(request: PaymentCreate, vault: Vault, merchant_id: str | None = None) -> MethodDetails:
    """Validate the payment method of ``request`` and return its routing and adapter form.

    In a merchant scope (``merchant_id``), a new card is also sealed (``MethodDetails.sealed``, to
    be written in the batch that finishes the payment) and a ``card_token`` is opened from the
    vault for the provider call.

    Args:
        request: The payment request.
        vault: Tokenizes cards; seals and opens saved ones.
        merchant_id: The merchant scope; without it cards are not saved and tokens not opened.

    Raises:
        PaymentError: ``invalid_number``, ``expired_card``, ``invalid_iban`` or
            ``currency_not_supported_by_method`` (400), naming the field; ``resource_missing``
            (404) for a ``card_token`` that does not exist or belongs to another merchant or mode,
            alike.
    """
    _refuse_card_numbers_in_text(request)
    method = request.payment_method
    if isinstance(method, CardTokenPaymentMethodIn):
        try:
            opened = await vault.open_token(merchant_id, method.card_token.token) if merchant_id is not None else None
        except VaultKeyMissing:
            raise PaymentError(
                "unavailable", "vault_unavailable", "saved cards cannot be read on this worker now; retry"
            ) from None
        return _saved_card(method, opened)
    details = _prepare(request, vault)
    if merchant_id is not None and isinstance(method, CardPaymentMethodIn) and details.shown.card is not None:
        summary = CardSummary(**msgspec.structs.asdict(details.shown.card))
        details.sealed = await vault.seal(merchant_id, summary, method.card.number, method.card.holder_name)
    return details


def _prepare(request: PaymentCreate, vault: Vault) -> MethodDetails:
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
        return _card_details(summary, card.number, card.cvc, card.holder_name)
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


def _card_details(summary: CardSummary, number: str, cvc: str | None, holder_name: str | None) -> MethodDetails:
    return MethodDetails(
        method_type="card",
        shown=PaymentMethodOut(type="card", card=CardOut(**msgspec.structs.asdict(summary))),
        card=CardData(
            number=number,
            exp_month=summary.exp_month,
            exp_year=summary.exp_year,
            cvc=cvc,
            holder_name=holder_name,
            brand=summary.brand,
        ),
        holder_name=holder_name,
    )


def _saved_card(method: CardTokenPaymentMethodIn, opened: OpenedCard | None) -> MethodDetails:
    if opened is None:
        # Unknown and another merchant's look the same: a 404 never confirms that a token exists.
        raise PaymentError("not_found", "resource_missing", "no such card token", "payment_method.card_token.token")
    try:
        validate_card(opened.number, opened.summary.exp_month, opened.summary.exp_year)
    except CardRejected as rejected:
        raise PaymentError("invalid", rejected.code, rejected.message, "payment_method.card_token.token") from None
    return _card_details(opened.summary, opened.number, method.card_token.cvc, opened.holder_name)


def _free_text(request: PaymentCreate) -> list[tuple[str, str | None]]:
    fields: list[tuple[str, str | None]] = [("reference", request.reference)]
    for key, value in request.metadata.items():
        fields += [(f"metadata.{key}", key), (f"metadata.{key}", value)]
    if request.customer is not None:
        customer = request.customer
        fields += [("customer.name", customer.name), ("customer.email", customer.email)]
        fields += [("customer.device_id", customer.device_id)]
    method = request.payment_method
    if isinstance(method, CardPaymentMethodIn):
        fields.append(("payment_method.card.holder_name", method.card.holder_name))
    elif isinstance(method, SepaDebitPaymentMethodIn):
        fields.append(("payment_method.sepa_debit.holder_name", method.sepa_debit.holder_name))
    elif isinstance(method, KonbiniPaymentMethodIn):
        fields.append(("payment_method.konbini.product_description", method.konbini.product_description))
    return fields


def _refuse_card_numbers_in_text(request: PaymentCreate) -> None:
    """Free-text fields are stored and shown as sent: a card number there would be kept in the clear."""
    for param, value in _free_text(request):
        if value is not None and contains_pan(value):
            raise PaymentError(
                "invalid",
                "card_number_in_text",
                "this field looks like it holds a card number; send card numbers only in payment_method.card",
                param,
            )


def _type_of(method: object) -> str:
    return type(method).__struct_config__.tag  # type: ignore[attr-defined, no-any-return]
