"""Run a role's preflight on the controller, as a user's playbook would, and capture what it says."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml
from ansible_collections.vmmesh.mesh.tests.unit.ansible_playbook import run_playbook

PLAYBOOK = Path(__file__).parent / "fixtures" / "preflight.yml"


def _run_preflight(
    role: str, extra_vars: dict, groups: dict[str, list[str]] | None = None
) -> subprocess.CompletedProcess:
    """Run `role` with --tags <role>_preflight in check mode on localhost.

    `groups` adds inventory groups (their other hosts are never contacted: the play runs on localhost only).
    """
    inventory: dict = {
        "all": {"hosts": {"localhost": {"ansible_connection": "local", "mesh_address": "127.0.0.1"}}, "children": {}}
    }
    for group, hosts in (groups or {}).items():
        inventory["all"]["children"][group] = {"hosts": dict.fromkeys(hosts)}
    with tempfile.NamedTemporaryFile("w", suffix=".yml") as inventory_file:
        yaml.safe_dump(inventory, inventory_file)
        inventory_file.flush()
        return run_playbook(
            PLAYBOOK,
            inventory_file.name,
            "--check",
            "--tags",
            f"{role}_preflight",
            extra_vars={"ansible_python_interpreter": sys.executable, "role_under_test": role, **extra_vars},
            timeout=120,
        )


@pytest.fixture
def run_preflight():
    """The preflight runner: run_preflight(role, extra_vars, groups=None) -> CompletedProcess."""
    return _run_preflight


@pytest.fixture
def port_held():
    """A context manager that keeps a TCP port on 127.0.0.1 listening, as another program would."""

    @contextlib.contextmanager
    def hold(port: int):
        with socket.socket() as holder:
            holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            holder.bind(("127.0.0.1", port))
            holder.listen()
            yield holder

    return hold


@pytest.fixture(scope="session")
def promtool() -> str:
    """Path of promtool: $VMMESH_PROMTOOL, the one `make promtool` unpacks into $VMMESH_CACHE, or one on PATH."""
    cache = Path(os.environ.get("VMMESH_CACHE", Path.home() / ".cache" / "vmmesh"))
    for candidate in (os.environ.get("VMMESH_PROMTOOL", ""), str(cache / "prometheus" / "usr" / "bin" / "promtool")):
        if candidate and Path(candidate).is_file():
            return candidate
    found = shutil.which("promtool")
    if found is None:
        pytest.fail("promtool is missing: run `make promtool` (it unpacks Debian's prometheus package into the cache)")
    return found


@pytest.fixture(scope="session")
def lab_promtool() -> str:
    """promtool of the lab's Prometheus build (Consul discovery in), as `lab/lab binaries` caches it."""
    import yaml

    versions = Path(__file__).resolve().parents[3] / "roles" / "_common" / "vars" / "versions.yml"
    version = yaml.safe_load(versions.read_text())["_vmmesh_versions"]["prometheus"]["version"]
    cache = Path(os.environ.get("VMMESH_CACHE", Path.home() / ".cache" / "vmmesh"))
    path = cache / "bin" / f"promtool-{version}"
    if not path.is_file():
        pytest.skip(f"{path} is missing: `lab/lab binaries` builds it")
    return str(path)
