"""deploy/: the Prometheus config and alert rules pass promtool, and every metric the dashboard and
the rules use is one the switch exposes."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from tests.observability.deploy_files import (
    ALERTS,
    DASHBOARD,
    PROMETHEUS,
    alert_expressions,
    dashboard_expressions,
    exposed_names,
    metric_names,
)

needs_promtool = pytest.mark.skipif(
    shutil.which("promtool") is None,
    reason="promtool not installed (Debian package 'prometheus': apt-get install -y prometheus)",
)


@needs_promtool
def test_promtool_accepts_the_prometheus_config():
    result = subprocess.run(["promtool", "check", "config", str(PROMETHEUS)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_promtool_accepts_the_alert_rules():
    result = subprocess.run(["promtool", "check", "rules", str(ALERTS)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "8 rules found" in result.stdout


def test_the_alerts_cover_what_operators_page_on():
    names = " ".join(alert_expressions())
    for needed in (
        "switch_authorizations_total",
        "switch_oldest_unresolved_intent_age_seconds",
        "switch_ledger_batches_failed_total",
        "switch_authorization_duration_seconds_bucket",
    ):
        assert needed in names


def test_the_dashboard_has_the_panels_operators_need():
    document = json.loads(DASHBOARD.read_text())
    titles = " | ".join(panel["title"] for panel in document["panels"])
    for needed in ("TPS", "Approval rate per account and method", "p50 / p99", "Cascade rate", "Unknown outcomes"):
        assert needed in titles
    for needed in ("Risk declines", "Ledger batch size", "Ledger commit latency"):
        assert needed in titles
    for panel in document["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}"


async def test_every_metric_used_by_the_dashboard_and_the_rules_is_exposed(client):
    exposition = (await client.get("/metrics")).text
    exposed = exposed_names(exposition)
    used = metric_names(dashboard_expressions()) | metric_names(alert_expressions())
    assert len(used) > 20
    missing = sorted(used - exposed)
    assert not missing, f"used in deploy/ but not exposed: {missing}"
