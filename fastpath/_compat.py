"""Reads ``SWITCH_NO_EXTENSIONS`` once, so every fastpath module makes the same choice.

``SWITCH_NO_EXTENSIONS=1`` (any value other than empty or ``0``, the rule ``setup.py`` uses) forces
the pure-Python implementations even when the compiled ones are built.
"""

import os

NO_EXTENSIONS: bool = os.environ.get("SWITCH_NO_EXTENSIONS", "") not in ("", "0")
