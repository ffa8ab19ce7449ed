"""The payment switch service: API, payment state machine, ledger, routing and stores."""

__version__ = "0.1.0"
