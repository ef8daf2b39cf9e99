"""The real ``ansible-playbook`` for unit tests, run against this checkout as the collection ``vmmesh.mesh``.

Import it as ``ansible_collections.vmmesh.mesh.tests.unit.ansible_playbook`` (the root conftest.py makes the checkout
importable under that name).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ANSIBLE_PLAYBOOK = Path(sys.executable).parent / "ansible-playbook"


def run_playbook(
    playbook: Path | str,
    inventory: Path | str | None,
    *options: str,
    extra_vars: Mapping[str, object] | None = None,
    timeout: int = 300,
) -> subprocess.CompletedProcess:
    """Run ``playbook`` on ``inventory`` (a file, ``"localhost,"``, or None for the implicit localhost) from the
    checkout, without colour.

    ``options`` go to ansible-playbook as they are (``"--check"``, ``"-e", "name=value"``); ``extra_vars`` are
    passed as one JSON ``--extra-vars``. The result is never checked here: tests assert on it.
    """
    env = dict(
        os.environ,
        ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
        ANSIBLE_COLLECTIONS_PATH=str(ROOT / ".cache" / "collections"),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_FORCE_COLOR="0",
        ANSIBLE_LOCALHOST_WARNING="0",
        ANSIBLE_INVENTORY_UNPARSED_WARNING="0",
    )
    command = [str(ANSIBLE_PLAYBOOK), *(["--inventory", str(inventory)] if inventory is not None else []), *options]
    if extra_vars:
        command += ["--extra-vars", json.dumps(dict(extra_vars))]
    command.append(str(playbook))
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False)


def flat_output(result: subprocess.CompletedProcess) -> str:
    """stdout and stderr on one line, whitespace collapsed: messages wrapped by Ansible compare whole."""
    return " ".join((result.stdout + result.stderr).split())


def assert_failed_with(result: subprocess.CompletedProcess, *fragments: str) -> None:
    """The run failed, and its output holds every fragment."""
    output = flat_output(result)
    assert result.returncode != 0, f"the run passed, but should have failed with {fragments}:\n{output[-3000:]}"
    missing = [fragment for fragment in fragments if fragment not in output]
    assert not missing, f"missing from the output: {missing}\n{output[-3000:]}"
