"""Shared fast state (idempotency locks and cached responses, counters): one ABC, one module per backend."""
