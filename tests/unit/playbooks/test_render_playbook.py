"""playbooks/render.yml end to end, offline, with the real ansible-playbook."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
from ansible_collections.vmmesh.mesh.tests.unit.ansible_playbook import run_playbook

ROOT = Path(__file__).resolve().parents[3]
FIXTURES = ROOT / "tests" / "unit" / "fixtures" / "inventories"
PLAYBOOK = ROOT / "playbooks" / "render.yml"


def _run(inventory: str, render_dir: Path) -> subprocess.CompletedProcess:
    return run_playbook(PLAYBOOK, FIXTURES / inventory, "-e", f"mesh_render_dir={render_dir}", timeout=600)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess]:
    target = tmp_path_factory.mktemp("render") / "shop"
    target.mkdir()
    (target / "stale.txt").write_text("from an earlier render\n")
    return target, _run("shop", target)


def test_render_writes_every_output(rendered: tuple) -> None:
    target, result = rendered
    assert result.returncode == 0, result.stdout + result.stderr
    assert not (target / "stale.txt").exists()  # the directory is replaced as a whole
    for name in ("plan.json", "graph.mmd", "graph.dot", "prometheus/vmmesh.json"):
        assert (target / name).is_file(), name
    assert (target / "hosts/web1/etc/haproxy/haproxy.cfg").is_file()
    assert (target / "hosts/api2/etc/envoy/api/lds.yaml").is_file()
    assert (target / "hosts/db1/etc/consul.d/vmmesh-db.json").is_file()
    assert not list(target.parent.glob(".shop.*")), "staging directories left behind"


def test_an_unchanged_render_changes_nothing(rendered: tuple) -> None:
    target, _result = rendered
    again = _run("shop", target)
    assert again.returncode == 0, again.stdout + again.stderr
    assert re.search(r"localhost\s+: ok=\d+\s+changed=0\s", again.stdout), again.stdout[-2000:]


def test_plan_json_shape(rendered: tuple) -> None:
    target, _result = rendered
    plan = json.loads((target / "plan.json").read_text())
    api = plan["services"]["api"]
    assert api["identity"] == "spiffe://shop.mesh/ns/default/dc/dc1/svc/api"
    assert api["protocol"] == "grpc"
    assert [(item["host"], item["address"], item["port"], item["sidecar"]) for item in api["instances"]] == [
        ("api1", "10.10.0.21", 8081, "envoy"),
        ("api2", "10.10.0.22", 8081, "envoy"),
    ]
    assert {item["inbound_port"] for item in api["instances"]} == {api["inbound_port"]}
    # mesh_address, ansible_host, then the default IPv4 facts
    assert plan["hosts"]["web1"]["address"] == "10.10.0.11"
    assert plan["hosts"]["db1"]["address"] == "10.10.0.31"
    kinds = {listener["kind"] for listener in plan["hosts"]["web1"]["listeners"]}
    assert kinds == {"inbound", "outbound", "admin", "metrics"}
    assert plan["edges"] == [
        {"source": "api", "destination": "db", "local_port": 9003},
        {"source": "web", "destination": "api", "local_port": 9001},
        {"source": "web", "destination": "db", "local_port": 9002},
    ]


def test_invalid_input_fails_with_every_error_and_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "broken"
    result = _run("broken", target)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "the mesh model has 3 errors:" in output
    assert "mesh.services.web.upstreams[0].service: unknown service 'apii'; did you mean 'api'?" in output
    assert "mesh.services.shop.upstreams[0].split: split weights sum to 90, not 100" in output
    assert (
        "mesh.services.web.upstreams[1].local_port: port 9002 on hosts 'web1', 'web2' is already used by "
        "mesh.services.web.port (application port of web)" in output
    )
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []
