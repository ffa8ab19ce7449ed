"""The metric names and expressions used by deploy/ (Grafana dashboard, alert rules)."""

from __future__ import annotations

import json
import pathlib
import re

import yaml

DEPLOY = pathlib.Path(__file__).resolve().parents[2] / "deploy"
DASHBOARD = DEPLOY / "grafana" / "switch-dashboard.json"
PROMETHEUS = DEPLOY / "prometheus" / "prometheus.yml"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
_METRIC = re.compile(r"\b((?:switch|process)_[a-z0-9_]+)\b")
_SUFFIXES = ("_total", "_created", "_bucket", "_count", "_sum")


def dashboard_expressions() -> list[str]:
    document = json.loads(DASHBOARD.read_text())
    return [target["expr"] for panel in document["panels"] for target in panel.get("targets", [])]


def alert_expressions() -> list[str]:
    document = yaml.safe_load(ALERTS.read_text())
    return [rule["expr"] for group in document["groups"] for rule in group["rules"]]


def metric_names(expressions: list[str]) -> set[str]:
    return {name for expr in expressions for name in _METRIC.findall(expr)}


def exposed_names(exposition: str) -> set[str]:
    """Every sample name an exposition can carry, from its TYPE lines (a labelled metric with no
    child yet has no sample line, but its TYPE line is there)."""
    names: set[str] = set()
    for line in exposition.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            names.add(name)
            if kind == "counter":
                names.update({name + "_total", name + "_created"})
            elif kind == "histogram":
                names.update(name + suffix for suffix in _SUFFIXES[1:])
    return names
