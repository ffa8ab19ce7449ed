"""Versioned schema migrations, applied in order by :mod:`switch.ledger.migrate`."""
