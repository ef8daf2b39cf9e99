"""playbooks/upgrade.yml with the real ansible-playbook: the preflight and the version reading and check.

The version steps run on the controller itself (``ansible_connection: local``) with the real Envoy binary of the
unit tests; ``--tags versions-only`` selects only the `always` plays (preflight, report, final check), so nothing is
installed. The upgrade proper (site.yml's plays) runs on the lab: molecule/default.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from ansible_collections.vmmesh.mesh.tests.unit.ansible_playbook import assert_failed_with, flat_output, run_playbook

ROOT = Path(__file__).resolve().parents[3]
UPGRADE = ROOT / "playbooks" / "upgrade.yml"
LAB = ROOT / "inventories" / "lab" / "hosts.yml"
BROKEN_MODEL = ROOT / "molecule" / "default" / "vars" / "broken-mesh.yml"
PINNED = yaml.safe_load((ROOT / "roles" / "_common" / "vars" / "versions.yml").read_text())["_vmmesh_versions"]
SITE_PLAYS = ("PLAY [Mesh CA on the controller]", "PLAY [Certificates of every host]", "PLAY [Consul servers")


def _inventory(tmp_path: Path, envoy_binary: str, **host_vars: object) -> Path:
    """One host, the controller itself, running an Envoy service and a HAProxy one."""
    inventory = tmp_path / "hosts.yml"
    host = {
        "ansible_connection": "local",
        "mesh_address": "127.0.0.1",
        "ansible_python_interpreter": "{{ ansible_playbook_python }}",
        "envoy_binary": envoy_binary,
        "consul_binary": str(tmp_path / "no-consul"),
        **host_vars,
    }
    mesh = {
        "name": "upgrade-test",
        "services": {
            "web": {"port": 18080, "hosts": ["local1"], "upstreams": [{"service": "api", "local_port": 19101}]},
            "api": {"port": 18081, "hosts": ["local1"], "sidecar": "haproxy"},
        },
        "intentions": [{"source": "web", "destination": "api", "action": "allow"}],
    }
    inventory.write_text(yaml.safe_dump({"all": {"hosts": {"local1": host}, "vars": {"mesh": mesh}}}))
    return inventory


def test_upgrade_passes_the_syntax_check() -> None:
    result = run_playbook(UPGRADE, LAB, "--syntax-check")
    assert result.returncode == 0, flat_output(result)[-3000:]


def test_a_broken_model_stops_in_preflight_before_any_host_is_contacted() -> None:
    result = run_playbook(UPGRADE, LAB, "--extra-vars", f"@{BROKEN_MODEL}")
    assert_failed_with(result, "the mesh model has 3 errors", "mesh.services.api.sidecar: invalid value 'nginx'")
    output = flat_output(result)
    assert "TASK [Check that every host answers]" not in output
    assert "TASK [Ask each program for its version]" not in output
    assert not [play for play in SITE_PLAYS if play in output]


def test_the_report_names_each_move_and_the_check_names_what_is_behind(tmp_path: Path, envoy_binary: str) -> None:
    inventory = _inventory(tmp_path, envoy_binary, envoy_version="1.99.0")
    result = run_playbook(UPGRADE, inventory, "--tags", "versions-only")
    envoy = PINNED["envoy"]["version"]
    consul = PINNED["consul"]["version"]
    # The report: what moves (envoy's binary reports the pinned version), what is not there yet, what stays.
    assert_failed_with(
        result,
        f"local1: consul not installed -> {consul}, envoy {envoy} -> 1.99.0; stays: node_exporter",
        f"local1: consul is not installed, not {consul}, envoy is {envoy}, not 1.99.0 after the upgrade",
    )
    # site.yml's plays were passed over (their headers show, none of their tasks).
    assert "TASK [Apply vmmesh.mesh." not in flat_output(result)


def test_a_host_at_its_targets_passes(tmp_path: Path, envoy_binary: str) -> None:
    consul = tmp_path / "consul"
    consul.write_text(f"#!/bin/sh\necho 'Consul v{PINNED['consul']['version']}'\n")
    consul.chmod(0o755)
    inventory = _inventory(tmp_path, envoy_binary, consul_binary=str(consul))
    result = run_playbook(UPGRADE, inventory, "--tags", "versions-only")
    output = flat_output(result)
    assert result.returncode == 0, output[-3000:]
    assert f"local1: nothing to upgrade; stays: consul {PINNED['consul']['version']}" in output
    assert f"envoy {PINNED['envoy']['version']}" in output
