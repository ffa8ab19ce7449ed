"""The payment state machine: authorize, capture, void, refund, idempotency, recovery."""
