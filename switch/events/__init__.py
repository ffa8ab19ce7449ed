"""Outbound merchant events: outbox rows, signing, endpoints and the delivery worker."""
