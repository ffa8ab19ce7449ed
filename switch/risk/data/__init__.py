"""Bundled data of the risk modules (a synthetic sanctions list: invented names, no real person)."""
