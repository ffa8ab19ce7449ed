"""Card validation, tokenization and saved cards.

The card number and CVC stay in memory for the length of the provider call. What is kept is a
random token (not derived from the number), the BIN, the last four digits, the brand and a
keyed fingerprint (HMAC-SHA256 of the number) for same-card velocity counts, and, so that a
returning customer can pay with the token, the number sealed with AES-256-GCM under the active
data key (:mod:`switch.vault.envelope`). The CVC is never stored, not even sealed.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import secrets
import time

import msgspec

from switch.vault.envelope import open_sealed, seal
from switch.vault.store import DataKeyStore, VaultKeyMissing

_BRANDS: tuple[tuple[str, tuple[tuple[int, int], ...]], ...] = (
    ("amex", ((34, 34), (37, 37))),
    ("visa", ((4, 4),)),
    ("mastercard", ((51, 55), (2221, 2720))),
    ("discover", ((6011, 6011), (644, 649), (65, 65))),
    ("jcb", ((3528, 3589),)),
    ("unionpay", ((62, 62),)),
    ("diners", ((300, 305), (36, 36), (38, 39))),
)


class CardRejected(ValueError):
    """The card data fails validation; ``code`` and ``param`` say which rule. Never carries the number."""

    def __init__(self, code: str, message: str, param: str) -> None:
        """Build the error."""
        super().__init__(message)
        self.code = code
        self.message = message
        self.param = param


class CardSummary(msgspec.Struct, frozen=True, kw_only=True):
    """What the switch keeps of a card."""

    brand: str
    bin: str
    last4: str
    exp_month: int
    exp_year: int
    token: str
    fingerprint: str


def luhn_valid(number: str) -> bool:
    """Return whether ``number`` (digits only) passes the Luhn check."""
    total = 0
    for position, char in enumerate(reversed(number)):
        digit = ord(char) - 48
        if position % 2:
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return total % 10 == 0


def brand_of(number: str) -> str:
    """Return the card brand from the leading digits, or ``unknown``."""
    for brand, ranges in _BRANDS:
        for low, high in ranges:
            width = len(str(low))
            if low <= int(number[:width]) <= high:
                return brand
    return "unknown"


def validate_card(number: str, exp_month: int, exp_year: int, today: datetime.date | None = None) -> None:
    """Check number format, Luhn and that the card has not expired.

    Raises:
        CardRejected: ``invalid_number`` or ``invalid_expiry_year``/``expired_card``.
    """
    if not (12 <= len(number) <= 19 and number.isascii() and number.isdigit()):
        raise CardRejected("invalid_number", "the card number must be 12 to 19 digits", "payment_method.card.number")
    if not luhn_valid(number):
        raise CardRejected("invalid_number", "the card number fails the Luhn check", "payment_method.card.number")
    today = today or datetime.datetime.now(datetime.UTC).date()
    if (exp_year, exp_month) < (today.year, today.month):
        raise CardRejected("expired_card", "the card's expiry date is in the past", "payment_method.card.exp_year")


class SealedCard(msgspec.Struct, frozen=True, kw_only=True):
    """A saved card as stored: the number only as ciphertext, the display fields apart."""

    token: str
    merchant_id: str
    key_id: str
    nonce: bytes
    ciphertext: bytes
    brand: str
    bin: str
    last4: str
    exp_month: int
    exp_year: int
    fingerprint: str
    created: int


class OpenedCard(msgspec.Struct, frozen=True, kw_only=True):
    """A saved card opened for one provider call; drop it as soon as the call returns."""

    number: str
    holder_name: str | None
    summary: CardSummary


class _Secret(msgspec.Struct, frozen=True):
    n: str
    h: str | None = None


_SECRET_ENCODER = msgspec.json.Encoder()
_SECRET_DECODER = msgspec.json.Decoder(_Secret)
_OPEN_SQL = (
    "SELECT token, key_id, nonce, ciphertext, brand, bin, last4, exp_month, exp_year, fingerprint"
    " FROM vault_cards WHERE token = $1 AND merchant_id = $2"
)


def associated_data(token: str, merchant_id: str) -> bytes:
    """What a card's ciphertext is bound to: a sealed number moved to another row does not open."""
    return f"vault-card:{merchant_id}:{token}".encode()


class Vault:
    """Turns card numbers into tokens and fingerprints, and seals and opens saved cards."""

    def __init__(self, fingerprint_key: bytes, keys: DataKeyStore | None = None) -> None:
        """Create a vault.

        Args:
            fingerprint_key: HMAC key for fingerprints; at least 16 bytes.
            keys: Data keys for saved cards; without them cards are tokenized but not saved.
        """
        if len(fingerprint_key) < 16:
            raise ValueError("the fingerprint key must be at least 16 bytes")
        self._key = fingerprint_key
        self._keys = keys

    @property
    def saves_cards(self) -> bool:
        """True when cards are sealed and can be paid with again by token."""
        return self._keys is not None

    async def seal(
        self, merchant_id: str, summary: CardSummary, number: str, holder_name: str | None
    ) -> SealedCard | None:
        """Seal ``number`` under the active data key, bound to ``summary.token`` and the merchant."""
        if self._keys is None or not self._keys.available:
            return None
        try:
            key_id, key = await self._keys.active()
        except VaultKeyMissing:
            return None  # logged by the key store; the payment goes on without saving the card
        plaintext = _SECRET_ENCODER.encode(_Secret(number, holder_name))
        nonce, ciphertext = seal(key, plaintext, associated_data(summary.token, merchant_id))
        return SealedCard(
            token=summary.token,
            merchant_id=merchant_id,
            key_id=key_id,
            nonce=nonce,
            ciphertext=ciphertext,
            brand=summary.brand,
            bin=summary.bin,
            last4=summary.last4,
            exp_month=summary.exp_month,
            exp_year=summary.exp_year,
            fingerprint=summary.fingerprint,
            created=int(time.time()),
        )

    async def open_token(self, merchant_id: str, token: str) -> OpenedCard | None:
        """Open the saved card ``token`` of ``merchant_id``; None when it is unknown or another's.

        The same None for both, so that a token of another merchant (or mode) is indistinguishable
        from one that does not exist.

        Raises:
            VaultKeyMissing: When this worker cannot unwrap the card's data key.
        """
        if self._keys is None:
            return None
        row = await self._keys.pool.fetchrow(_OPEN_SQL, token, merchant_id)
        if row is None:
            return None
        key = await self._keys.key(row["key_id"])
        secret = _SECRET_DECODER.decode(
            open_sealed(key, bytes(row["nonce"]), bytes(row["ciphertext"]), associated_data(token, merchant_id))
        )
        summary = CardSummary(
            brand=row["brand"],
            bin=row["bin"],
            last4=row["last4"],
            exp_month=row["exp_month"],
            exp_year=row["exp_year"],
            token=token,
            fingerprint=row["fingerprint"],
        )
        return OpenedCard(number=secret.n, holder_name=secret.h, summary=summary)

    def fingerprint(self, number: str) -> str:
        """Return a stable keyed fingerprint of ``number`` (same card, same fingerprint)."""
        return hmac.new(self._key, number.encode("ascii"), hashlib.sha256).hexdigest()[:32]

    def summarize(self, number: str, exp_month: int, exp_year: int) -> CardSummary:
        """Return the card's stored summary with a fresh random token."""
        return CardSummary(
            brand=brand_of(number),
            bin=number[:6],
            last4=number[-4:],
            exp_month=exp_month,
            exp_year=exp_year,
            token="tok_" + secrets.token_urlsafe(18),
            fingerprint=self.fingerprint(number),
        )
