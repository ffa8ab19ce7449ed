"""Domain errors shared by every layer below the API, which maps ``kind`` to an HTTP status."""

from __future__ import annotations

from typing import Literal

ErrorKind = Literal["invalid", "not_found", "state", "amount", "conflict", "idempotency_mismatch", "unavailable"]


class PaymentError(Exception):
    """A refusal with a stable machine-readable ``code``.

    Attributes:
        kind: What class of refusal this is (drives the HTTP status).
        code: A stable code such as ``payment_already_voided``.
        message: A sentence for humans; never contains card data.
        param: Dotted path of the offending request field, or None.
    """

    def __init__(self, kind: ErrorKind, code: str, message: str, param: str | None = None) -> None:
        """Build the error; see the class attributes."""
        super().__init__(message)
        self.kind = kind
        self.code = code
        self.message = message
        self.param = param


class LedgerUnavailable(PaymentError):
    """The group commit that carried this request failed; nothing of it was acknowledged."""

    def __init__(self, message: str = "the ledger could not commit this request; retry it") -> None:
        """Build the error."""
        super().__init__("unavailable", "ledger_unavailable", message)


class ConcurrentUpdate(PaymentError):
    """Another request changed the payment between our read and our write."""

    def __init__(self, payment_id: str) -> None:
        """Build the error for ``payment_id``."""
        super().__init__(
            "conflict",
            "payment_concurrently_modified",
            f"payment {payment_id} was modified by a concurrent request; retry",
        )
