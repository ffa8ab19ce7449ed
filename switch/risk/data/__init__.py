"""Bundled data of the risk modules: BIN and IP-country tables, a synthetic sanctions list (no real person)."""
