"""playbooks/site.yml before it touches a host, and the example inventories, with the real ansible-playbook."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from ansible_collections.vmmesh.mesh.tests.unit.ansible_playbook import assert_failed_with, flat_output, run_playbook

ROOT = Path(__file__).resolve().parents[3]
SITE = ROOT / "playbooks" / "site.yml"
RENDER = ROOT / "playbooks" / "render.yml"
INVENTORIES = ROOT / "inventories"
BROKEN_MODEL = ROOT / "molecule" / "default" / "vars" / "broken-mesh.yml"
LATER_PLAYS = ("PLAY [Mesh CA on the controller]", "PLAY [Certificates of every host]", "PLAY [Consul servers")


def test_site_passes_the_syntax_check() -> None:
    result = run_playbook(SITE, INVENTORIES / "lab" / "hosts.yml", "--syntax-check")
    assert result.returncode == 0, flat_output(result)[-3000:]


@pytest.mark.parametrize(
    ("inventory", "hosts"),
    [
        ("lab", {"vmmesh-web1", "vmmesh-api1", "vmmesh-api2"}),
        ("production", {"web1.example.net", "web2.example.net", "api1.example.net", "api3.example.net"}),
    ],
)
def test_the_planner_accepts_the_example_inventories(tmp_path: Path, inventory: str, hosts: set[str]) -> None:
    result = run_playbook(RENDER, INVENTORIES / inventory, "-e", f"mesh_render_dir={tmp_path / 'render'}")
    assert result.returncode == 0, flat_output(result)[-3000:]
    plan = json.loads((tmp_path / "render" / "plan.json").read_text())
    assert sorted(plan["services"]) == ["api", "redis", "web"]
    assert hosts <= set(plan["hosts"])
    assert plan["warnings"] == []
    api = plan["services"]["api"]
    assert {instance["sidecar"] for instance in api["instances"]} == {"haproxy"}
    assert {subset for instance in api["instances"] for subset in instance["subsets"]} == {"stable", "canary"}


def test_the_lab_and_the_default_scenario_share_one_model() -> None:
    scenario = yaml.safe_load((ROOT / "molecule" / "default" / "molecule.yml").read_text())
    links = scenario["provisioner"]["inventory"]["links"]
    linked = (ROOT / "molecule" / "default" / links["group_vars"]).resolve()
    assert linked == (INVENTORIES / "lab" / "group_vars").resolve()
    lab_groups = {group for platform in scenario["platforms"] for group in platform["groups"]}
    assert {"consul_servers", "monitoring", "web", "api", "api_stable", "api_canary", "redis"} <= lab_groups


def test_a_broken_model_stops_in_preflight_before_any_host_is_contacted() -> None:
    # The lab's hosts need not exist: the planner fails on the controller first.
    result = run_playbook(SITE, INVENTORIES / "lab" / "hosts.yml", "--extra-vars", f"@{BROKEN_MODEL}")
    assert_failed_with(
        result,
        "the mesh model has 3 errors",
        "mesh.services.api.sidecar: invalid value 'nginx'; use one of: envoy, haproxy",
        "mesh.services.web.port: 70000 is out of range; use a number from 1 to 65535",
        "mesh.intentions[1].destination: unknown service 'payments'",
    )
    output = flat_output(result)
    assert "TASK [Check that every host answers]" not in output
    assert not [play for play in LATER_PLAYS if play in output]


def test_a_missing_model_is_named(tmp_path: Path) -> None:
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(yaml.safe_dump({"all": {"hosts": {"web1": {"ansible_connection": "local"}}}}))
    result = run_playbook(SITE, inventory)
    assert_failed_with(result, "The variable mesh is not defined for web1")
    assert not [play for play in LATER_PLAYS if play in flat_output(result)]


def test_an_unreachable_host_stops_the_run_before_anything_changes(tmp_path: Path, monkeypatch) -> None:
    # The lab's model and settings on hosts that do not exist; the controller's state goes to tmp_path.
    monkeypatch.setenv("VMMESH_LAB_STATE", str(tmp_path / "state"))
    shutil.copytree(INVENTORIES / "lab" / "group_vars", tmp_path / "group_vars")
    lab = yaml.safe_load((INVENTORIES / "lab" / "hosts.yml").read_text())
    text = yaml.safe_dump(lab).replace("vmmesh-", "vmmesh-absent-")
    (tmp_path / "hosts.yml").write_text(text)
    result = run_playbook(SITE, tmp_path, timeout=300)
    output = flat_output(result)
    assert result.returncode != 0, output[-3000:]
    assert "TASK [Check that every host answers]" in output
    assert "vmmesh-absent-web1" in output
    assert not [play for play in LATER_PLAYS if play in output]
    assert not (tmp_path / "state").exists()
