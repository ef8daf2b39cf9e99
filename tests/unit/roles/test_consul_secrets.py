"""The Consul cluster secrets on the controller: made once by a real run, never by a check run."""

from __future__ import annotations

import base64
import re
from pathlib import Path

from ansible_collections.vmmesh.mesh.tests.unit.ansible_playbook import run_playbook

PLAYBOOK = """
- name: Load the Consul cluster secrets
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Run the secrets tasks of vmmesh.mesh.consul
      ansible.builtin.include_role:
        name: vmmesh.mesh.consul
        tasks_from: secrets.yml
    - name: Show the gossip key in use
      ansible.builtin.debug:
        msg: "gossip key in use: {{ __consul_encrypt_key }}"
"""


def _run(tmp_path: Path, *options: str):
    playbook = tmp_path / "secrets.yml"
    playbook.write_text(PLAYBOOK)
    return run_playbook(playbook, None, *options, extra_vars={"consul_secrets_dir": str(tmp_path / "secrets")})


def _key_in_use(output: str) -> str:
    found = re.search(r"gossip key in use: ([A-Za-z0-9+/=]+)", output)
    assert found, output
    return found.group(1)


def test_a_check_run_makes_no_secret_and_uses_a_placeholder(tmp_path: Path) -> None:
    result = _run(tmp_path, "--check")
    assert result.returncode == 0, result.stdout + result.stderr
    assert not (tmp_path / "secrets").exists(), "a check run wrote on the controller"
    assert _key_in_use(result.stdout) == "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="


def test_a_real_run_makes_them_once_and_a_check_run_then_reads_them(tmp_path: Path) -> None:
    first = _run(tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr
    stored = tmp_path / "secrets" / "dc1"
    key = (stored / "gossip-key").read_text().strip()
    assert len(base64.b64decode(key)) == 32 and _key_in_use(first.stdout) == key
    seed = (stored / "acl-bootstrap-seed").read_text()
    assert {oct(path.stat().st_mode & 0o777) for path in stored.iterdir()} == {"0o600"}
    check = _run(tmp_path, "--check")
    assert check.returncode == 0, check.stdout + check.stderr
    assert _key_in_use(check.stdout) == key and (stored / "acl-bootstrap-seed").read_text() == seed
