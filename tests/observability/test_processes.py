"""Real processes: ``switch serve --workers 2`` answers counters summed over both workers, its
exposition passes ``promtool check metrics``, a real Prometheus scrapes it and evaluates the
dashboard's and the alerts' expressions, and the run's metrics directory is removed at exit."""

from __future__ import annotations

import asyncio
import json
import pathlib
import shutil
import subprocess
import time
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector

from tests.conftest import temporary_database
from tests.observability.deploy_files import ALERTS, alert_expressions, dashboard_expressions
from tests.observability.processes import (
    Served,
    free_port,
    new_merchant_key,
    sample_value,
    send_payments,
    serve,
)

PAYMENTS = 40
AUTH = "switch_authorizations_total"


@pytest.fixture(scope="module")
def two_workers(server_url, redis_url, tmp_path_factory) -> Iterator[tuple[Served, pathlib.Path]]:
    tmp = tmp_path_factory.mktemp("two-workers")
    with (
        temporary_database(server_url, "switch_obs_") as database_url,
        serve(database_url, redis_url, tmp, workers=2) as served,
    ):
        key = asyncio.run(new_merchant_key(database_url))
        asyncio.run(send_payments(served.url, key, PAYMENTS, decline_every=5))
        directory = pathlib.Path(served.banner_value("metrics: 2 workers summed through"))
        yield served, directory
    assert not directory.exists(), "the run's metrics directory outlived the run"


def _per_worker_counts(directory: pathlib.Path, scratch: pathlib.Path) -> dict[int, float]:
    """Each worker's own count, read from its own file in the multiprocess directory."""
    counts: dict[int, float] = {}
    for path in directory.glob("counter_*.db"):
        pid = int(path.stem.split("_")[1])
        alone = scratch / str(pid)
        alone.mkdir()
        shutil.copy(path, alone / path.name)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=str(alone))
        counts[pid] = sum(
            sample.value for family in registry.collect() for sample in family.samples if sample.name == AUTH
        )
    return counts


def test_metrics_are_summed_over_both_workers(two_workers, tmp_path):
    served, directory = two_workers
    per_worker = _per_worker_counts(directory, tmp_path)
    assert len(per_worker) == 2, per_worker
    assert all(count > 0 for count in per_worker.values()), f"one worker served nothing: {per_worker}"
    assert sum(per_worker.values()) == PAYMENTS
    # Whichever worker answers the scrape (a new connection each time), it answers the total.
    for _ in range(6):
        text = httpx.get(f"{served.url}/metrics", timeout=10).text
        assert sample_value(text, AUTH) == PAYMENTS
        assert sample_value(text, AUTH, status="declined") == PAYMENTS // 5
        assert sample_value(text, "switch_authorization_duration_seconds_count") == PAYMENTS
        assert sample_value(text, "process_resident_memory_bytes") > 0
        assert sample_value(text, "process_cpu_seconds_total") > 0


def test_promtool_check_metrics_passes_on_the_multi_worker_exposition(two_workers):
    if shutil.which("promtool") is None:
        pytest.skip("promtool not installed (Debian package 'prometheus': apt-get install -y prometheus)")
    served, _ = two_workers
    text = httpx.get(f"{served.url}/metrics", timeout=10).text
    result = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_real_prometheus_scrapes_the_switch_and_evaluates_the_deploy_expressions(two_workers, tmp_path):
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("prometheus not installed (Debian package 'prometheus': apt-get install -y prometheus)")
    served, _ = two_workers
    target = served.url.removeprefix("http://")
    shutil.copy(ALERTS, tmp_path / "alerts.yml")
    (tmp_path / "prometheus.yml").write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "rule_files: [alerts.yml]\n"
        "scrape_configs:\n  - job_name: payment-switch\n"
        f"    static_configs:\n      - targets: ['{target}']\n"
    )
    port = free_port()
    api = f"http://127.0.0.1:{port}/api/v1"
    with (tmp_path / "prometheus.log").open("wb") as log:
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={tmp_path / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp_path / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        value = _await_value(api, f"sum({AUTH})", PAYMENTS, process, tmp_path / "prometheus.log")
        assert value == PAYMENTS
        for expr in dashboard_expressions() + alert_expressions():
            answer = httpx.get(f"{api}/query", params={"query": expr}, timeout=10).json()
            assert answer["status"] == "success", (expr, answer)
        groups = httpx.get(f"{api}/rules", timeout=10).json()["data"]["groups"]
        rules = [rule for group in groups for rule in group["rules"]]
        assert len(rules) == 8
        deadline = time.monotonic() + 10
        while any(rule.get("health") != "ok" for rule in rules) and time.monotonic() < deadline:
            time.sleep(0.5)
            groups = httpx.get(f"{api}/rules", timeout=10).json()["data"]["groups"]
            rules = [rule for group in groups for rule in group["rules"]]
        assert all(rule["health"] == "ok" for rule in rules), json.dumps(rules)[:2000]
    finally:
        process.terminate()
        process.wait(timeout=20)


def _await_value(api: str, query: str, expected: float, process, log: pathlib.Path) -> float:
    deadline = time.monotonic() + 30
    value = -1.0
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"prometheus exited: {log.read_text()[-2000:]}")
        try:
            result = httpx.get(f"{api}/query", params={"query": query}, timeout=5).json()["data"]["result"]
        except (httpx.TransportError, KeyError, ValueError):
            result = []
        if result:
            value = float(result[0]["value"][1])
            if value == expected:
                return value
        time.sleep(0.5)
    return value
