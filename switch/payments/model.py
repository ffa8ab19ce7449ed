"""Request and response shapes of payments and refunds (msgspec Structs, built once)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

Amount = Annotated[int, Meta(ge=1, le=10**15, description="Integer minor units of the currency")]
CurrencyCode = Annotated[str, Meta(pattern="^[A-Z]{3}$", description="ISO 4217 code, upper case")]
# PostgreSQL text cannot hold NUL; refusing it here keeps one hostile request from failing a whole
# ledger batch.
_NO_NUL = "^[^\x00]*$"
ShortText = Annotated[str, Meta(max_length=255, pattern=_NO_NUL)]
IdempotencyKeyText = Annotated[str, Meta(min_length=1, max_length=255)]
Metadata = Annotated[
    dict[
        Annotated[str, Meta(min_length=1, max_length=40, pattern=_NO_NUL)],
        Annotated[str, Meta(max_length=500, pattern=_NO_NUL)],
    ],
    Meta(max_length=50),
]


class CardIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """A card as the merchant sends it."""

    number: Annotated[str, Meta(min_length=1, max_length=19)]
    exp_month: Annotated[int, Meta(ge=1, le=12)]
    exp_year: Annotated[int, Meta(ge=2000, le=2100)]
    cvc: Annotated[str, Meta(pattern="^[0-9]{3,4}$")] | None = None
    holder_name: Annotated[str, Meta(max_length=200, pattern=_NO_NUL)] | None = None


class CardPaymentMethodIn(msgspec.Struct, forbid_unknown_fields=True, tag="card", tag_field="type"):
    """``payment_method`` of type ``card``."""

    card: CardIn


class CardTokenIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """A card saved by an earlier payment of the same merchant, by its token."""

    token: Annotated[str, Meta(pattern="^tok_[A-Za-z0-9_-]{1,64}$")]
    cvc: Annotated[str, Meta(pattern="^[0-9]{3,4}$")] | None = None


class CardTokenPaymentMethodIn(msgspec.Struct, forbid_unknown_fields=True, tag="card_token", tag_field="type"):
    """``payment_method`` of type ``card_token``: pay again with a saved card (``tok_...``)."""

    card_token: CardTokenIn


class WalletIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Which e-wallet pays, and where the customer returns after approving."""

    type: Literal["gopay", "grabpay", "paypal"]
    return_url: Annotated[str, Meta(max_length=2048, pattern="^https?://[^\\s\x00]+$")] | None = None


class WalletPaymentMethodIn(msgspec.Struct, forbid_unknown_fields=True, tag="wallet", tag_field="type"):
    """``payment_method`` of type ``wallet``: answered ``requires_action`` with a redirect."""

    wallet: WalletIn


class KonbiniIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Konbini voucher options (JPY only)."""

    product_description: Annotated[str, Meta(max_length=22, pattern=_NO_NUL)] | None = None
    expires_after_days: Annotated[int, Meta(ge=1, le=60)] = 3


class KonbiniPaymentMethodIn(msgspec.Struct, forbid_unknown_fields=True, tag="konbini", tag_field="type"):
    """``payment_method`` of type ``konbini``: answered ``requires_action`` with a voucher."""

    konbini: KonbiniIn = msgspec.field(default_factory=KonbiniIn)


_URL = Annotated[str, Meta(max_length=2048, pattern="^https?://[^\\s\x00]+$")]


class SepaDebitIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """A SEPA direct debit from ``iban`` under the mandate the debtor signed on ``mandate_date``."""

    iban: Annotated[str, Meta(min_length=15, max_length=42, pattern="^[A-Za-z0-9 ]+$")]
    holder_name: Annotated[str, Meta(min_length=1, max_length=70, pattern=_NO_NUL)]
    bic: Annotated[str, Meta(pattern="^[A-Z0-9]{8}([A-Z0-9]{3})?$")] | None = None
    mandate_id: Annotated[str, Meta(min_length=1, max_length=35, pattern="^[A-Za-z0-9+?/:().,' -]+$")] | None = None
    mandate_date: Annotated[str, Meta(pattern="^[0-9]{4}-[0-9]{2}-[0-9]{2}$")] | None = None


class SepaDebitPaymentMethodIn(msgspec.Struct, forbid_unknown_fields=True, tag="sepa_debit", tag_field="type"):
    """``payment_method`` of type ``sepa_debit``: answered ``pending`` until the debit settles."""

    sepa_debit: SepaDebitIn


class HostedCheckoutIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Where the customer returns from a provider-hosted checkout page (PingPong, LianLian)."""

    return_url: _URL | None = None
    cancel_url: _URL | None = None


class HostedCheckoutPaymentMethodIn(
    msgspec.Struct, forbid_unknown_fields=True, tag="hosted_checkout", tag_field="type"
):
    """``payment_method`` of type ``hosted_checkout``: the customer pays on the provider's page."""

    hosted_checkout: HostedCheckoutIn = msgspec.field(default_factory=HostedCheckoutIn)


PaymentMethodIn = (
    CardPaymentMethodIn
    | CardTokenPaymentMethodIn
    | WalletPaymentMethodIn
    | KonbiniPaymentMethodIn
    | SepaDebitPaymentMethodIn
    | HostedCheckoutPaymentMethodIn
)


class CustomerIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, omit_defaults=True):
    """Who pays; used by risk and routing."""

    email: Annotated[str, Meta(max_length=254, pattern="^[^@\\s\x00]+@[^@\\s\x00]+$")] | None = None
    ip: Annotated[str, Meta(max_length=45, pattern="^[0-9A-Fa-f.:]+$")] | None = None
    country: Annotated[str, Meta(pattern="^[A-Z]{2}$")] | None = None
    device_id: Annotated[str, Meta(max_length=100, pattern=_NO_NUL)] | None = None
    name: Annotated[str, Meta(max_length=200, pattern=_NO_NUL)] | None = None
    # The merchant's own id of the customer: velocity and canary stickiness key on it.
    id: Annotated[str, Meta(min_length=1, max_length=100, pattern=_NO_NUL)] | None = None
    # A merchant-defined customer segment that routing rules may match (``customer_segment``).
    segment: Annotated[str, Meta(pattern="^[a-z0-9][a-z0-9_-]{0,39}$")] | None = None


class PaymentCreate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """``POST /v1/payments`` body."""

    amount: Amount
    currency: CurrencyCode
    payment_method: PaymentMethodIn
    capture: Literal["automatic", "manual"] = "automatic"
    reference: ShortText | None = None
    customer: CustomerIn | None = None
    metadata: Metadata = msgspec.field(default_factory=dict)


class CaptureCreate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """``POST /v1/payments/{id}/capture`` body; every field optional."""

    amount: Amount | None = None
    final: bool | None = None


class VoidCreate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """``POST /v1/payments/{id}/void`` body."""

    reason: Literal["duplicate", "fraudulent", "requested_by_customer", "abandoned"] | None = None


class RefundCreate(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """``POST /v1/payments/{id}/refunds`` body; without ``amount`` everything refundable is refunded."""

    amount: Amount | None = None
    reason: Literal["duplicate", "fraudulent", "requested_by_customer"] | None = None
    metadata: Metadata = msgspec.field(default_factory=dict)


class CardOut(msgspec.Struct, kw_only=True):
    """The card as shown back: never the number or the CVC."""

    brand: str
    bin: str
    last4: str
    exp_month: int
    exp_year: int
    token: str
    fingerprint: str


class WalletOut(msgspec.Struct, kw_only=True):
    """The wallet of a payment."""

    type: str


class SepaDebitOut(msgspec.Struct, kw_only=True):
    """The debited account, masked: country, bank code and last four characters of the IBAN."""

    country: str
    bank_code: str
    last4: str
    mandate_id: str | None = None


class PaymentMethodOut(msgspec.Struct, kw_only=True, omit_defaults=True):
    """``payment_method`` in a response; only the member of its ``type`` is present."""

    type: str
    card: CardOut | None = None
    wallet: WalletOut | None = None
    sepa_debit: SepaDebitOut | None = None


class AttemptOut(msgspec.Struct, kw_only=True):
    """One provider call of the routing plan."""

    provider: str
    outcome: str
    code: str | None
    latency_ms: int


class RoutingCost(msgspec.Struct, kw_only=True):
    """What one candidate would cost for this payment, in minor units of the payment's currency.

    ``fee`` and ``fx_cost`` are null when the account has no fee schedule for the payment.
    """

    account: str
    fee: int | None
    fx_cost: int | None


class RoutingOut(msgspec.Struct, kw_only=True):
    """How the payment was routed: the config version and rule, the plan's reason, each attempt.

    ``rule`` is null when the config's default applied; ``version`` 0 is the implied config of a
    merchant without one. ``cost`` is the first planned candidate's, ``runner_up`` the next one's.
    """

    strategy: str
    reason: str
    attempts: list[AttemptOut]
    rule: str | None = None
    version: int = 0
    cost: RoutingCost | None = None
    runner_up: RoutingCost | None = None


class DeclineOut(msgspec.Struct, kw_only=True):
    """Why a payment was declined."""

    code: str
    category: Literal["hard", "soft", "technical"]
    message: str


class Payment(msgspec.Struct, kw_only=True):
    """The payment object of the API."""

    id: str
    object: Literal["payment"] = "payment"
    status: str
    amount: int
    currency: str
    amount_captured: int
    amount_refunded: int
    capture: str
    payment_method: PaymentMethodOut
    provider: str | None
    provider_reference: str | None
    routing: RoutingOut
    risk: dict[str, Any] | None = None
    decline: DeclineOut | None = None
    next_action: dict[str, Any] | None = None
    # Why a payment is ``pending``: ``provider_outcome_unknown`` (the provider's answer was lost;
    # recovery settles it), ``awaiting_customer`` (voucher, wallet, redirect) or
    # ``awaiting_settlement`` (a debit or transfer the provider confirms later).
    pending_reason: str | None = None
    reference: str | None = None
    metadata: dict[str, str] = msgspec.field(default_factory=dict)
    # Who paid, as the merchant sent it (no card data): risk's backtest replays velocity and geo
    # rules from it.
    customer: CustomerIn | None = None
    livemode: bool = False
    created: int


class Refund(msgspec.Struct, kw_only=True):
    """The refund object of the API."""

    id: str
    object: Literal["refund"] = "refund"
    payment: str
    amount: int
    currency: str
    status: str
    reason: str | None = None
    metadata: dict[str, str] = msgspec.field(default_factory=dict)
    created: int


ENCODER = msgspec.json.Encoder()
PAYMENT_DECODER = msgspec.json.Decoder(Payment)
