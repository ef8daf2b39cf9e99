"""The data-path benchmark's own logic: the paths it derives from its mesh, and what it reports.

The measurement itself needs the benchmarks' lab (``make bench-mesh``); here playbooks/render.yml plans the
benchmarks' real model and inventory, as the harness does, so a change to either that would break the harness shows
up in ``make test``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
BENCH = ROOT / "tests" / "bench"
sys.path.insert(0, str(BENCH))

import mesh_bench  # noqa: E402
from ansible_collections.vmmesh.mesh.tests.unit.ansible_playbook import flat_output, run_playbook  # noqa: E402


@pytest.fixture(scope="module")
def bench_plan(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, dict]:
    """The benchmark's model and its plan, as the harness gets it: playbooks/render.yml on tests/bench/mesh."""
    render = tmp_path_factory.mktemp("bench") / "render"
    result = run_playbook(
        ROOT / "playbooks" / "render.yml", BENCH / "mesh" / "hosts.yml", "-e", f"mesh_render_dir={render}"
    )
    assert result.returncode == 0, flat_output(result)[-3000:]
    mesh = yaml.safe_load((BENCH / "mesh" / "group_vars" / "all" / "mesh.yml").read_text())["mesh"]
    return mesh, json.loads((render / "plan.json").read_text())


def test_the_paths_cover_direct_and_every_sidecar_pair(bench_plan: tuple[dict, dict]) -> None:
    mesh, plan = bench_plan
    paths = mesh_bench.paths(mesh, plan)
    assert list(paths) == [
        "direct",
        "envoy-envoy",
        "envoy-haproxy",
        "haproxy-haproxy",
        "haproxy-envoy",
        "consul-connect",
        "direct-tcp",
        "envoy-envoy-tcp",
        "haproxy-haproxy-tcp",
        "direct-grpc",
        "envoy-envoy-grpc",
        "haproxy-haproxy-grpc",
    ]
    assert paths["direct-grpc"] == {"url": "grpc://10.89.71.31:8086", "sidecars": []}
    assert paths["haproxy-haproxy-grpc"]["url"] == "grpc://127.0.0.1:9204"
    assert paths["direct"] == {"url": "http://10.89.71.31:8081/echo", "sidecars": []}
    assert paths["direct-tcp"] == {"url": "tcp://10.89.71.31:8084", "sidecars": []}
    assert paths["envoy-haproxy"]["url"] == "http://127.0.0.1:9102/echo"
    assert paths["haproxy-haproxy-tcp"]["url"] == "tcp://127.0.0.1:9203"
    (caller, callee) = paths["envoy-haproxy"]["sidecars"]
    assert caller[:3] == (mesh_bench.LOAD, "envoy", "load-envoy") and caller[3] > 0
    assert callee[:3] == (mesh_bench.ECHO, "haproxy", "echo-haproxy")
    assert [sidecar[1] for sidecar in paths["consul-connect"]["sidecars"]] == ["consul-envoy", "consul-envoy"]
    for name, path in paths.items():
        kinds = [sidecar[1] for sidecar in path["sidecars"]]
        assert name.startswith(("direct", "consul-connect")) or "-".join(kinds) == name.removesuffix(
            "-tcp"
        ).removesuffix("-grpc")


def test_tcp_and_grpc_answers_count_as_answered() -> None:
    assert mesh_bench.answered({"RetCodes": {"OK": 7}}) == 7
    assert mesh_bench.answered({"RetCodes": {"SERVING": 4, "UNAVAILABLE": 1}}) == 4
    assert mesh_bench.answered({"RetCodes": {"200": 5, "503": 2}}) == 5


def _run(p50: float, p99: float, cpu: float, tls: float, failed: int = 0) -> dict:
    latency = {"p50": p50, "p90": p50 * 2, "p99": p99, "p99.9": p99 * 2}
    return {
        "requests": 1000,
        "qps": 500.0,
        "failed": failed,
        "latency_ms": latency,
        "cpu_s_per_1k": {"envoy:load-envoy": cpu},
        "tls_per_1k": tls,
    }


def test_medians_are_taken_per_figure_and_failures_summed() -> None:
    median = mesh_bench.median_of([_run(1.0, 9.0, 0.3, 0.0), _run(3.0, 5.0, 0.1, 2.0, 1), _run(2.0, 7.0, 0.2, 1.0)])
    assert median["latency_ms"]["p50"] == 2.0 and median["latency_ms"]["p99"] == 7.0
    assert median["cpu_s_per_1k"] == {"envoy:load-envoy": 0.2}
    assert median["tls_per_1k"] == 1.0
    assert (median["requests"], median["failed"]) == (3000, 1)


@pytest.mark.parametrize(("p50", "added"), [(1.25, "+0.750"), (0.25, "-0.250")])
def test_the_table_shows_the_difference_to_direct(p50: float, added: str) -> None:
    direct = mesh_bench.median_of([_run(0.5, 2.0, 0.0, 0.0)])
    direct["cpu_s_per_1k"] = {}
    report = {
        "date": "2026-11-27",
        "machine": {"cpus": 2, "cpu": "test"},
        "versions": {"envoy": "1.36.4"},
        "settings": {"rate": 500, "connections": 8, "seconds": 20, "warmup": 5, "runs": 1},
        "paths": {
            "direct": {"sidecars": [], "median": direct, "peak_rss_mb": {}},
            "envoy-envoy": {
                "sidecars": ["envoy:load-envoy@b1"],
                "median": mesh_bench.median_of([_run(p50, 3.0, 0.2, 0.5)]),
                "peak_rss_mb": {"envoy:load-envoy": 40.0},
            },
        },
    }
    rows = [line for line in mesh_bench.markdown(report).splitlines() if line.startswith("| envoy-envoy")]
    assert rows and f"| {added} | +1.000 |" in rows[0] and "envoy 0.200" in rows[0] and "envoy 40.0" in rows[0]
    assert "Converge" not in mesh_bench.markdown(report)
    report["converge_seconds"] = {"apps": 9.0, "site_first": 301.2, "site_noop": 95.4, "site_noop_unchanged": True}
    assert "took 301 s on fresh hosts and 95 s when run again, with nothing changed." in mesh_bench.markdown(report)


def test_the_rate_search_keeps_the_last_step_under_the_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    # A stand-in for fortio: p99 grows with the rate, and past 1,600/s it cannot keep up.
    def fake_fortio(url: str, rate: int, connections: int, seconds: float) -> dict:
        p99 = rate / 200 / 1000
        return {
            "ActualQPS": min(rate, 1600),
            "RetCodes": {"200": 100},
            "DurationHistogram": {"Count": 100, "Percentiles": [{"Percentile": 99, "Value": p99}]},
        }

    monkeypatch.setattr(mesh_bench, "fortio", fake_fortio)
    found = mesh_bench.highest_rate("http://x", 500, 8, 1, limit_ms=10.0)
    assert [step["rate"] for step in found["steps"]] == [500, 750, 1125, 1687]
    assert found["rate"] == 1125 and not found["steps"][-1]["passed"]
    assert mesh_bench.highest_rate("http://x", 500, 8, 1, limit_ms=2.0)["rate"] == 0
