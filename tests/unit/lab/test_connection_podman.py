"""The lab's connection plugin (lab/plugins/connection/podman.py): the short name ``podman`` that molecule's driver
writes finds it before containers.podman.podman; it finds the container's first process with one ``podman inspect``
and runs each command in that process's namespaces with nsenter, a pipelined module on its stdin."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from ansible.errors import AnsibleConnectionFailure
from ansible.playbook.play_context import PlayContext
from ansible.plugins.loader import connection_loader

LAB_CONNECTIONS = Path(__file__).resolve().parents[3] / "lab" / "plugins" / "connection"
CONTAINER_ENV = [
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "TERM=xterm",
    "container=podman",
    "HOME=/root",
    "container_uuid=a92d91f9bcb1d627083885944696f6d9",
    "HOSTNAME=a92d91f9bcb1",
]


def lab_connection(**variables):
    connection_loader.add_directory(str(LAB_CONNECTIONS))
    context = PlayContext()
    context.remote_addr = "vmmesh-web1"
    plugin = connection_loader.get("podman", context, None)
    plugin.set_options(var_options={"inventory_hostname": "vmmesh-web1", **variables})
    return plugin


class Inspect:
    """Stands in for ``podman inspect`` of one container: records the command, answers with its state."""

    def __init__(self, pid: int, rc: int = 0, stderr: bytes = b"") -> None:
        self.answer = (rc, json.dumps({"pid": pid, "env": CONTAINER_ENV}).encode() if rc == 0 else b"", stderr)
        self.calls: list[tuple] = []

    def __call__(self, cmd, cmd_args=None, in_data=None, use_container_id=True):
        self.calls.append((cmd, list(cmd_args or [])))
        return self.answer


def test_the_short_name_loads_the_labs_plugin():
    connection = lab_connection()
    assert Path(connection._original_path) == LAB_CONNECTIONS / "podman.py"
    assert connection.transport == "podman"


def test_pipelining_is_on_by_default_and_can_be_turned_off():
    assert lab_connection().is_pipelining_enabled()
    assert not lab_connection(ansible_pipelining=False).is_pipelining_enabled()


def test_one_inspect_finds_the_first_process_and_the_environment_podman_exec_gives(monkeypatch):
    connection = lab_connection()
    inspect = Inspect(pid=4242)
    monkeypatch.setattr(connection, "_podman", inspect)
    connection._connect()
    connection._connect()
    assert len(inspect.calls) == 1
    assert inspect.calls[0][0] == "inspect"
    assert connection._pid == 4242
    assert connection._environment == {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "TERM": "xterm",
        "container": "podman",
        "HOME": "/root",
    }
    assert connection._mount_point == b"/proc/4242/root"


@pytest.mark.parametrize(
    ("inspect", "reason"),
    [(Inspect(pid=0), "it is not running"), (Inspect(pid=0, rc=125, stderr=b"Error: no such container"), "no such")],
)
def test_a_container_that_is_not_running_is_unreachable_with_the_reason(monkeypatch, inspect, reason):
    connection = lab_connection()
    monkeypatch.setattr(connection, "_podman", inspect)
    with pytest.raises(AnsibleConnectionFailure, match=f"cannot reach the lab container vmmesh-web1: .*{reason}"):
        connection._connect()


def test_a_pipelined_module_goes_on_the_stdin_of_a_command_in_the_target_namespaces(monkeypatch):
    # The target is this test's own process: nsenter enters the namespaces it is already in, for real.
    connection = lab_connection()
    monkeypatch.setattr(connection, "_podman", Inspect(pid=os.getpid()))
    rc, stdout, stderr = connection.exec_command(
        "/bin/sh -c 'cat; echo \" $container $HOME\"; pwd'", in_data=b"the module"
    )
    assert (rc, stderr) == (0, b"")
    # In the target's working directory (systemd's: /).
    assert stdout.decode().splitlines() == ["the module podman /root", os.getcwd()]
    rc, _stdout, _stderr = connection.exec_command("/bin/sh -c 'exit 3'")
    assert rc == 3
