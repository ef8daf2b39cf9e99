"""The converge benchmark's own logic: the inventories it generates plan cleanly, and what it reads and reports.

The timing itself needs lab hosts (``make bench-converge``); here playbooks/render.yml plans the generated
inventories, as site.yml's preflight would, so that a change to the model or the lab's settings that would stop the
benchmark shows up in ``make test``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "tests" / "bench"))

import converge_bench  # noqa: E402
from ansible_collections.vmmesh.mesh.tests.unit.ansible_playbook import flat_output, run_playbook  # noqa: E402


@pytest.mark.parametrize(("size", "connection"), [(1, "podman"), (5, "ssh")])
def test_the_generated_inventory_plans_one_service_per_host(tmp_path: Path, size: int, connection: str) -> None:
    hosts = converge_bench.write_inventory(tmp_path / "inventory", size, connection, tmp_path / "id_ed25519")
    render = tmp_path / "render"
    result = run_playbook(ROOT / "playbooks" / "render.yml", hosts, "-e", f"mesh_render_dir={render}")
    assert result.returncode == 0, flat_output(result)[-3000:]
    plan = json.loads((render / "plan.json").read_text())
    names = [converge_bench.host_name(number) for number in range(1, size + 1)]
    assert sorted(plan["hosts"]) == names
    instances = {
        name: [(instance["host"], instance["sidecar"]) for instance in service["instances"]]
        for name, service in plan["services"].items()
    }
    assert instances == {
        f"svc{number:02d}": [(names[number - 1], "envoy" if number % 2 else "haproxy")] for number in range(1, size + 1)
    }
    inventory = yaml.safe_load(hosts.read_text())["all"]
    assert list(inventory["children"]["consul_servers"]["hosts"]) == names[:1]
    assert list(inventory["children"]["consul_clients"]["hosts"]) == names[1:]
    assert inventory["vars"]["ansible_connection"] == ("ssh" if connection == "ssh" else "podman")


def test_the_ring_calls_the_next_host_and_a_single_host_calls_nothing() -> None:
    ring = converge_bench.mesh_model(3)
    assert [service["upstreams"][0]["service"] for service in ring["services"].values()] == ["svc02", "svc03", "svc01"]
    assert [(i["source"], i["destination"]) for i in ring["intentions"]] == [
        ("svc01", "svc02"),
        ("svc02", "svc03"),
        ("svc03", "svc01"),
    ]
    alone = converge_bench.mesh_model(1)
    assert "upstreams" not in alone["services"]["svc01"] and alone["intentions"] == []


def test_the_recap_is_read_per_host() -> None:
    output = (
        "PLAY RECAP *********\n"
        "vmmesh-conv01              : ok=120  changed=0    unreachable=0    failed=0    skipped=40   rescued=0\n"
        "vmmesh-conv02              : ok=98   changed=3    unreachable=0    failed=0    skipped=51   rescued=0\n"
        "localhost                  : ok=7    changed=0    unreachable=0    failed=0    skipped=2    rescued=0\n"
    )
    counts = converge_bench.recap(output)
    assert counts["vmmesh-conv02"] == {"ok": 98, "changed": 3, "unreachable": 0, "failed": 0, "skipped": 51}
    assert sorted(counts) == ["localhost", "vmmesh-conv01", "vmmesh-conv02"]


def test_the_settings_are_read_from_each_ansible_cfg() -> None:
    found = converge_bench.settings(converge_bench.CONFIGS["ssh"])
    assert found["ssh_connection"]["pipelining"] == "True"
    assert "ControlPersist" in found["ssh_connection"]["ssh_args"]
    assert int(found["defaults"]["forks"]) >= 20


def _row(hosts: int, connection: str, first: float, **extra) -> dict:
    timing = {"seconds": first, "tasks": 300, "changed": 0}
    return {"hosts": hosts, "connection": connection, "first": timing, "noop": timing, **extra}


def test_a_partial_run_keeps_the_rows_it_did_not_measure_with_their_dates() -> None:
    previous = {
        "date": "2026-11-27",
        "settings": {"ssh": {"defaults": {"forks": "25"}}, "podman": {"defaults": {"forks": "10"}}},
        "runs": [_row(1, "ssh", 83), _row(1, "podman", 131), _row(20, "ssh", 691)],
    }
    report = {
        "date": "2026-11-28",
        "machine": {"cpu": "a CPU", "cpus": 2, "ansible_core": "2.19.14"},
        "versions": {"openssh": "OpenSSH_9.2p1", "podman": "4.3.1"},
        "settings": {"podman": {"defaults": {"forks": "25"}}},
        "runs": [_row(1, "podman", 97, date="2026-11-28"), _row(20, "podman", 500, date="2026-11-28")],
    }
    merged = converge_bench.keep_previous(report, previous)
    assert [(row["hosts"], row["connection"], row["first"]["seconds"], row["date"]) for row in merged["runs"]] == [
        (1, "ssh", 83, "2026-11-27"),
        (1, "podman", 97, "2026-11-28"),
        (20, "ssh", 691, "2026-11-27"),
        (20, "podman", 500, "2026-11-28"),
    ]
    assert merged["settings"] == {"ssh": {"defaults": {"forks": "25"}}, "podman": {"defaults": {"forks": "25"}}}
    table = converge_bench.markdown(merged)
    assert "| 1 | podman | 97 s | 97 s | 300 / 300 | 0 | 2026-11-28 |" in table
    assert "| 20 | ssh | 691 s | 691 s | 300 / 300 | 0 | 2026-11-27 |" in table
    assert converge_bench.keep_previous(report, {})["runs"] == report["runs"]
