"""Real ``switch serve`` processes for the shutdown and crash tests."""

from __future__ import annotations

import os
import pathlib
import socket
import subprocess
import sys
import time

import httpx

SWITCH = [sys.executable, "-m", "switch.cli"]


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def switch_env(**values: str) -> dict[str, str]:
    """The environment without the caller's SWITCH_* settings, plus ``values``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWITCH_")}
    env.update(SWITCH_LOG_LEVEL="WARNING", **values)
    return env


class Served:
    """One ``switch serve`` process on a free port."""

    def __init__(self, env: dict[str, str], log: pathlib.Path) -> None:
        """Start it; :meth:`wait_ready` waits for its readiness probe."""
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log = log.open("ab")
        self.process = subprocess.Popen(
            [*SWITCH, "serve", "--port", str(self.port)], env=env, stdout=self._log, stderr=subprocess.STDOUT
        )

    def wait_ready(self, within_s: float = 90) -> None:
        """Block until ``/health/ready`` answers 200."""
        deadline = time.monotonic() + within_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"switch serve exited with {self.process.returncode}")
            try:
                if httpx.get(f"{self.url}/health/ready", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise RuntimeError("switch serve never became ready")

    def wait(self, within_s: float) -> int:
        """Wait for the exit; return its code."""
        try:
            return self.process.wait(timeout=within_s)
        finally:
            self._log.close()

    def stop(self) -> None:
        """Make sure it is gone (test teardown)."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self._log.close()


def postmaster_pid(data_dir: pathlib.Path) -> int | None:
    """The pid of the embedded PostgreSQL running in ``data_dir``, if any."""
    pid_file = data_dir / "pg" / "postmaster.pid"
    try:
        return int(pid_file.read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return None


def running(pid: int) -> bool:
    """Whether ``pid`` is a live process (not a zombie)."""
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False
