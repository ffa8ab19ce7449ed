"""SIGTERM drains and stops what ``switch serve`` started; a serve after a kill -9 adopts the
orphaned embedded PostgreSQL and stops it at its own exit. Real processes, real embedded server."""

from __future__ import annotations

import concurrent.futures
import signal
import time

import httpx
import pytest

from tests.api.helpers import payment_body
from tests.reliability.processes import Served, postmaster_pid, running, switch_env


@pytest.fixture
def data_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("serve")
    path.chmod(0o755)
    return path


def _gone(pid: int, within_s: float) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if not running(pid):
            return True
        time.sleep(0.1)
    return False


def test_sigterm_finishes_in_flight_requests_then_stops_the_embedded_postgres(data_dir):
    served = Served(switch_env(SWITCH_DATA_DIR=str(data_dir), SWITCH_SANDBOX_LATENCY_MS="1500"), data_dir / "log")
    try:
        served.wait_ready()
        key = (data_dir / "demo_key").read_text().strip()
        postgres = postmaster_pid(data_dir)
        assert postgres is not None and running(postgres)
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            answer = pool.submit(
                httpx.post,
                f"{served.url}/v1/payments",
                json=payment_body(),
                headers={"Authorization": f"Bearer {key}", "Idempotency-Key": "drain-1"},
                timeout=30,
            )
            time.sleep(0.5)  # the payment is now waiting on the (slow) provider
            served.process.send_signal(signal.SIGTERM)
            response = answer.result(timeout=30)
        assert response.status_code == 201, response.text
        assert served.wait(within_s=30) == 0
        assert _gone(postgres, 10), "the embedded PostgreSQL outlived switch serve"
    finally:
        served.stop()


def test_a_serve_after_a_kill_9_adopts_the_orphaned_postgres_and_stops_it(data_dir):
    env = switch_env(SWITCH_DATA_DIR=str(data_dir))
    first = Served(env, data_dir / "log")
    try:
        first.wait_ready()
        postgres = postmaster_pid(data_dir)
        assert postgres is not None
        first.process.kill()
        first.wait(within_s=10)
        assert running(postgres)  # orphaned: nobody will stop it
    finally:
        first.stop()
    second = Served(env, data_dir / "log")
    try:
        second.wait_ready()
        assert postmaster_pid(data_dir) == postgres  # adopted, not a second server
        second.process.send_signal(signal.SIGTERM)
        assert second.wait(within_s=30) == 0
        assert _gone(postgres, 10), "the adopted PostgreSQL was not stopped"
    finally:
        second.stop()
