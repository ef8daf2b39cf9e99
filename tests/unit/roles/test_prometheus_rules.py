"""The collection's Prometheus rules: accepted by promtool, and right on the series the mesh produces.

The scenarios are ``prometheus_rules/*.test.yml``, run with ``promtool test rules``; every alert and every
recording rule the collection ships is exercised by one of them.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
RULES = sorted((ROOT / "roles" / "prometheus" / "files" / "rules").glob("*.yml"))
TESTS = sorted((Path(__file__).parent / "prometheus_rules").glob("*.test.yml"))


def _rules() -> list[dict]:
    return [rule for path in RULES for group in yaml.safe_load(path.read_text())["groups"] for rule in group["rules"]]


def _tests() -> list[dict]:
    return [test for path in TESTS for test in yaml.safe_load(path.read_text())["tests"]]


@pytest.mark.parametrize("path", RULES, ids=lambda p: p.name)
def test_promtool_accepts_the_rule_file(promtool: str, path: Path) -> None:
    result = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("path", TESTS, ids=lambda p: p.name)
def test_promtool_unit_tests_pass(promtool: str, path: Path) -> None:
    result = subprocess.run(
        [promtool, "test", "rules", path.name], cwd=path.parent, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_fires_in_a_test() -> None:
    fired = {
        case["alertname"] for test in _tests() for case in test.get("alert_rule_test", []) if case.get("exp_alerts")
    }
    alerts = {rule["alert"] for rule in _rules() if "alert" in rule}
    assert alerts - fired == set(), "alerts no promtool test makes fire"


def test_every_recording_rule_is_checked_in_a_test() -> None:
    exprs = " ".join(case["expr"] for test in _tests() for case in test.get("promql_expr_test", []))
    records = {rule["record"] for rule in _rules() if "record" in rule}
    assert {record for record in records if record not in exprs} == set()


def test_a_broken_rule_is_rejected(promtool: str, tmp_path: Path) -> None:
    """The check the role runs before a rule file goes live does reject bad rules."""
    bad = tmp_path / "bad.yml"
    bad.write_text("groups:\n  - name: bad\n    rules:\n      - alert: Broken\n        expr: rate(up[5m]\n")
    result = subprocess.run([promtool, "check", "rules", str(bad)], capture_output=True, text=True, check=False)
    assert result.returncode == 1
    assert "bad.yml" in result.stdout + result.stderr
