"""Routing: which providers to try for a payment, in what order, and when to cascade."""
