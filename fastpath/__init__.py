"""The switch's compiled hot path: fees, FX and velocity counters.

Each module is a trio: ``x.py`` picks the implementation, ``_x_c.pyx`` is the compiled one and
``_x_py.py`` the readable reference with the same API. ``x.IMPLEMENTATION`` says which one
loaded (``"c"`` or ``"py"``); ``SWITCH_NO_EXTENSIONS=1`` forces pure Python. This package imports
neither ``switch`` nor ``adapters``.
"""
