"""playbooks/rotate_ca.yml on the controller itself (two local "hosts"): the checks that stop a rotation.

The complete rotation between real hosts, with mTLS handshakes after every phase, is proven by molecule/identity.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from ansible_collections.vmmesh.mesh.tests.unit.ansible_playbook import assert_failed_with, flat_output, run_playbook

ROOT = Path(__file__).resolve().parents[3]
ANSIBLE_PLAYBOOK = Path(sys.executable).parent / "ansible-playbook"
SITE = """
- name: The mesh CA
  hosts: localhost
  gather_facts: false
  roles: [vmmesh.mesh.mesh_ca]
- name: The certificates
  hosts: all
  gather_facts: false
  roles: [vmmesh.mesh.certificates]
"""


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """h1 (web behind HAProxy) and h2 (api, Consul server) with certificates from CA generation 1."""
    root = tmp_path_factory.mktemp("rotate")
    spiffe = "spiffe://unit.mesh/ns/default/dc/dc1/svc/"
    inventory = {
        "all": {
            "vars": {
                "ansible_connection": "local",
                "ansible_python_interpreter": sys.executable,
                "ansible_become": False,
                "mesh_ca_dir": str(root / "ca"),
                "mesh_ca_trust_domain": "unit.mesh",
                "certificates_packages": [],
                "certificates_textfile_dir": "",
            },
            "hosts": {
                "h1": {
                    "certificates_dir": str(root / "h1"),
                    "certificates_services": [{"name": "web", "identity": spiffe + "web", "sidecar": "haproxy"}],
                },
                "h2": {
                    "certificates_dir": str(root / "h2"),
                    "certificates_services": [{"name": "api", "identity": spiffe + "api"}],
                    "certificates_consul_role": "server",
                },
            },
        }
    }
    (root / "hosts.yml").write_text(yaml.safe_dump(inventory))
    (root / "site.yml").write_text(SITE)
    result = _run(root, root / "site.yml")
    assert result.returncode == 0, result.stdout[-3000:]
    return root


def _run(root: Path, playbook: Path, *extra: str) -> subprocess.CompletedProcess:
    options = [option for argument in extra for option in ("-e", argument)]
    return run_playbook(playbook, root / "hosts.yml", *options, timeout=600)


def _rotate(root: Path, phases: str) -> subprocess.CompletedProcess:
    return _run(root, ROOT / "playbooks" / "rotate_ca.yml", f"rotate_ca_phases={phases}")


def _state(root: Path) -> dict:
    return json.loads((root / "ca" / "state.json").read_text())


def _issuer(path: Path) -> str:
    return subprocess.run(
        ["openssl", "x509", "-noout", "-issuer", "-in", str(path)], capture_output=True, text=True, check=True
    ).stdout.strip()


def test_bad_phases_are_refused(lab: Path) -> None:
    result = _rotate(lab, "remove,add")
    assert_failed_with(
        result, 'rotate_ca_phases is ["remove", "add"]: give some of add, reissue and remove, in that order'
    )


def test_reissue_before_add_is_refused(lab: Path) -> None:
    result = _rotate(lab, "reissue")
    assert_failed_with(result, "No next CA is trusted yet: run phase add first.")
    assert _state(lab) == {"format_version": 1, "signer": 1, "trusted": [1]}


def test_the_next_ca_signs_only_when_every_host_trusts_it(lab: Path) -> None:
    assert _rotate(lab, "add").returncode == 0
    assert _state(lab) == {"format_version": 1, "signer": 1, "trusted": [1, 2]}
    bundle = lab / "h2" / "api" / "ca-bundle.pem"
    assert bundle.read_text().count("BEGIN CERTIFICATE") == 2
    # h2 loses the next CA from one of its bundles: the rotation must not go on.
    bundle.write_bytes((lab / "ca" / "generations" / "1" / "ca.pem").read_bytes())
    refused = _rotate(lab, "reissue,remove")
    assert refused.returncode != 0
    assert (
        "h2 could not be read or hold a trust bundle without both CAs (vmmesh unit.mesh CA 1, vmmesh unit.mesh CA 2)"
        in (flat_output(refused))
    )
    assert _state(lab)["signer"] == 1
    assert "CA 1" in _issuer(lab / "h1" / "web" / "cert.pem")
