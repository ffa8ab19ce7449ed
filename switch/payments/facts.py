"""What the switch knows about a payment before risk and routing decide on it.

The BIN table gives the card's country, brand and funding type; the IP table the customer's
country. Both are looked up once per payment, here, and handed to risk and routing as facts that
never contain the card number.
"""

from __future__ import annotations

import msgspec

from switch.payments.methods import MethodDetails
from switch.payments.model import PaymentCreate
from switch.risk.bins import BinTable
from switch.risk.geoip import IpCountryTable
from switch.risk.types import BinInfo
from switch.routing.document import PaymentFacts


class PaymentProfile(msgspec.Struct, frozen=True, kw_only=True):
    """Facts derived once per payment; never the card number.

    Attributes:
        bin: The BIN table's row for the card (None for other methods or unknown BINs).
        ip_country: The customer IP's country, when the IP table knows it.
        card_fingerprint: The keyed fingerprint of the card number (same card, same value).
        sticky: Canary stickiness keys by kind (``customer``, ``card``).
    """

    bin: BinInfo | None
    ip_country: str | None
    card_fingerprint: str | None
    sticky: dict[str, str | None]


class Profiler:
    """Looks up BIN and IP facts."""

    def __init__(self, bins: BinTable | None = None, ips: IpCountryTable | None = None) -> None:
        """Use the given tables (the bundled ones by default)."""
        self.bins = bins or BinTable()
        self.ips = ips or IpCountryTable.bundled()

    def profile(self, request: PaymentCreate, method: MethodDetails) -> PaymentProfile:
        """Derive the facts of one payment."""
        card = method.shown.card
        # The full number (in memory only) finds 8-digit BIN ranges the shown 6 digits cannot.
        bin_info = self.bins.lookup(method.card.number) if method.card is not None else None
        customer = request.customer
        customer_key = None
        if customer is not None:
            customer_key = customer.id or customer.email
        return PaymentProfile(
            bin=bin_info,
            ip_country=self.ips.lookup(customer.ip) if customer is not None else None,
            card_fingerprint=card.fingerprint if card is not None else None,
            sticky={"customer": customer_key, "card": card.fingerprint if card is not None else None},
        )


def routing_facts(request: PaymentCreate, method: MethodDetails, profile: PaymentProfile) -> PaymentFacts:
    """The facts routing rules match on.

    ``payment_method`` is the method's own type (``card``, ``gopay``, ``grabpay``, ``konbini``,
    ``sepa_debit``, ...), so a rule can send one wallet elsewhere than another.
    """
    card = method.shown.card
    bin_info = profile.bin
    customer = request.customer
    return PaymentFacts(
        amount=request.amount,
        currency=request.currency,
        payment_method=method.method_type,
        card_country=bin_info.country if bin_info is not None else None,
        ip_country=profile.ip_country,
        card_brand=card.brand if card is not None else None,
        # Eight digits, as PCI DSS allows for display, so 8-digit BIN ranges can be matched.
        bin=method.card.number[:8] if method.card is not None else None,
        funding=bin_info.funding if bin_info is not None else None,
        customer_segment=customer.segment if customer is not None else None,
        metadata=request.metadata,
    )
