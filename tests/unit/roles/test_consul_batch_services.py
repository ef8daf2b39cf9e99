"""Which services' ACL policies and tokens a batch of a rollout keeps (vmmesh.mesh.consul's register.yml).

site.yml applies register.yml to its hosts batch by batch; each batch must keep the policies and tokens of the
services with an instance on its own hosts, so that every service's are kept once per run, not once per batch.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml
from ansible_collections.vmmesh.mesh.tests.unit.ansible_playbook import flat_output, run_playbook

ROOT = Path(__file__).resolve().parents[3]
MESH = {
    "name": "shop",
    "services": {
        "web": {"port": 8080, "hosts": ["h1"], "upstreams": [{"service": "api", "local_port": 9001}]},
        "api": {"port": 8081, "hosts": ["h2", "h3"], "sidecar": "haproxy"},
        "cache": {"port": 6379, "protocol": "tcp", "hosts": ["h3"]},
    },
    "intentions": [{"source": "web", "destination": "api", "action": "allow"}],
}


def test_each_batch_keeps_the_services_of_its_own_hosts(tmp_path: Path) -> None:
    hosts = {f"h{number}": {"ansible_connection": "local", "mesh_address": f"10.0.0.{number}"} for number in (1, 2, 3)}
    hosts["h4"] = {"ansible_connection": "local", "mesh_address": "10.0.0.4"}  # a host without mesh services
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(yaml.safe_dump({"all": {"hosts": hosts}}))
    playbook = tmp_path / "batches.yml"
    playbook.write_text(
        yaml.safe_dump(
            [
                {
                    "name": "Batches of two hosts, as site.yml's sidecars play",
                    "hosts": "all",
                    "serial": 2,
                    "gather_facts": False,
                    "tasks": [
                        {"ansible.builtin.include_vars": str(ROOT / "roles" / "consul" / "vars" / "main.yml")},
                        {
                            "delegate_to": "localhost",
                            "run_once": True,
                            "ansible.builtin.copy": {
                                "dest": "{{ out }}/{{ ansible_play_batch | join('-') }}.json",
                                "content": "{{ _consul_batch_services | to_json }}",
                            },
                        },
                    ],
                }
            ]
        )
    )
    variables = {"out": str(tmp_path), "mesh": MESH, "ansible_python_interpreter": sys.executable}
    result = run_playbook(playbook, inventory, extra_vars=variables)
    assert result.returncode == 0, flat_output(result)[-3000:]
    assert json.loads((tmp_path / "h1-h2.json").read_text()) == ["api", "web"]
    assert json.loads((tmp_path / "h3-h4.json").read_text()) == ["api", "cache"]
