"""The Grafana dashboards: valid JSON, well-formed, and naming only metrics that exist.

A metric exists when the collection's recording rules make it, or when it was seen in the live
``molecule/observability`` scenario (``molecule/observability/metrics-seen.txt``, checked against the live
Prometheus by that scenario's verifier).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
DASHBOARDS = sorted((ROOT / "dashboards").glob("*.json"))
RULES = sorted((ROOT / "roles" / "prometheus" / "files" / "rules").glob("*.yml"))
SEEN = ROOT / "molecule" / "observability" / "metrics-seen.txt"

# PromQL words that are not metric names.
_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset", "and", "or", "unless"}
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_MATCHERS = re.compile(r"\{[^}]*\}")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_RANGE = re.compile(r"\[[^\]]*\]")
_NAME = re.compile(r"(?<![\w:$.])([A-Za-z_:][\w:]*)(?![\w:])(?!\s*\()")


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects."""
    text = _GROUPING.sub(" ", _RANGE.sub(" ", _MATCHERS.sub(" ", _STRING.sub('""', expr))))
    return {name for name in _NAME.findall(text) if name.lower() not in _KEYWORDS}


def _exprs(node: object) -> list[str]:
    if isinstance(node, dict):
        found = [node["expr"]] if isinstance(node.get("expr"), str) else []
        return found + [e for value in node.values() for e in _exprs(value)]
    if isinstance(node, list):
        return [e for value in node for e in _exprs(value)]
    return []


def _recorded() -> set[str]:
    return {
        rule["record"]
        for path in RULES
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
        if "record" in rule
    }


def _seen() -> set[str]:
    return {line.strip() for line in SEEN.read_text().splitlines() if line.strip() and not line.startswith("#")}


def test_the_three_dashboards_exist() -> None:
    assert [p.name for p in DASHBOARDS] == ["host.json", "mesh-overview.json", "sidecar.json"]


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_is_grafana_json(path: Path) -> None:
    dashboard = json.loads(path.read_text())
    assert dashboard["uid"].startswith("vmmesh-") and dashboard["title"].startswith("vmmesh / ")
    panels = dashboard["panels"]
    assert len({p["id"] for p in panels}) == len(panels), "panel ids must be unique"
    for panel in panels:
        assert panel["targets"], f"panel {panel['title']!r} has no query"
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    used = set(re.findall(r"\$(\w+)", json.dumps(panels))) | set(
        re.findall(r"\$(\w+)", json.dumps(dashboard["templating"]["list"]))
    )
    assert used <= variables, f"undefined variables: {used - variables}"


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_names_only_metrics_that_exist(path: Path) -> None:
    names = {name for expr in _exprs(json.loads(path.read_text())) for name in metric_names(expr)}
    assert names, "no metric found: the parser is broken"
    unknown = names - _recorded() - _seen() - {"ALERTS"}
    assert not unknown, f"{path.name} names metrics nothing produces: {sorted(unknown)}"


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ('sum by (source, destination) (vmmesh:edge_requests:rate1m{mesh=~"$mesh"})', {"vmmesh:edge_requests:rate1m"}),
        (
            'rate(node_cpu_seconds_total{mode="idle"}[1m]) / on (host) group_left node_load1',
            {"node_cpu_seconds_total", "node_load1"},
        ),
        ('count by (job) (up{mesh=~"$mesh"} == 0)', {"up"}),
        ("histogram_quantile(0.99, sum by (le) (rate(x_bucket[5m])))", {"x_bucket"}),
    ],
)
def test_metric_names_are_found_in_promql(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names
