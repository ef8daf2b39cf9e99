# Copyright (c) vmmesh.mesh contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
# ruff: noqa: E402
"""The lab's connection to its hosts: containers.podman.podman, as cheap per module as SSH with pipelining.

containers.podman.podman runs five ``podman exec`` per module (home, temporary directory, chmod, the module,
cleanup): it does not pipeline, as it never attaches the command's stdin, and each ``podman exec`` costs about
0.14 s on the lab machine. Real hosts are reached over SSH with pipelining (``inventories/production/ansible.cfg``):
one round trip per module. This plugin gives the lab about the same cost:

* one ``podman inspect`` per task and host finds the container's first process;
* each command enters that process's namespaces with ``nsenter`` (about 3 ms) with the environment ``podman exec``
  gives, and the module goes on its stdin (pipelining);
* files are copied through that process's root (``/proc/PID/root``): the container's file system with its own
  mounts, where containers.podman.podman copies through the image's overlay and misses them (the hosts' ``/tmp``).

The lab's containers are rootful and privileged, so entering their namespaces gives the commands what ``podman exec``
gives them. With a ``remote_user`` the commands go through ``podman exec --user`` instead.

Molecule's podman driver writes ``ansible_connection: podman``; with this directory in ``connection_plugins``
(``.config/molecule/config.yml``, ``ansible.cfg``) that short name loads this plugin. Without it, the same name loads
containers.podman.podman: slower, otherwise the same.
"""

from __future__ import annotations

DOCUMENTATION = r"""
name: podman
short_description: Run tasks in the lab's podman containers at the cost of SSH with pipelining
description:
  - The connection of containers.podman.podman, with pipelining. Each command
    enters the container's namespaces with C(nsenter) and each module goes on
    its stdin, instead of five C(podman exec) per module.
  - Files (M(ansible.builtin.copy), M(ansible.builtin.template),
    M(ansible.builtin.fetch)) go through C(/proc/PID/root) of the container's
    first process.
  - For the lab's rootful, privileged containers only.
author: vmmesh.mesh maintainers
options:
  remote_addr:
    description: The name or ID of the container.
    default: inventory_hostname
    vars:
      - name: ansible_host
      - name: inventory_hostname
      - name: ansible_podman_host
  remote_user:
    description: The user (name or UID) that runs commands inside the container.
    ini:
      - section: defaults
        key: remote_user
    env:
      - name: ANSIBLE_REMOTE_USER
    vars:
      - name: ansible_user
  podman_extra_args:
    description: Extra arguments to the podman command line.
    default: ''
    ini:
      - section: defaults
        key: podman_extra_args
    vars:
      - name: ansible_podman_extra_args
    env:
      - name: ANSIBLE_PODMAN_EXTRA_ARGS
  podman_executable:
    description: The podman executable.
    default: podman
    vars:
      - name: ansible_podman_executable
    env:
      - name: ANSIBLE_PODMAN_EXECUTABLE
  pipelining:
    description:
      - Pass modules on stdin, one command per module.
    type: boolean
    default: true
    env:
      - name: ANSIBLE_PIPELINING
    ini:
      - section: connection
        key: pipelining
    vars:
      - name: ansible_pipelining
"""

import json
import shlex
import subprocess

from ansible.errors import AnsibleConnectionFailure
from ansible.module_utils.common.process import get_bin_path
from ansible.module_utils.common.text.converters import to_bytes, to_native
from ansible.plugins.connection import ensure_connect
from ansible.utils.display import Display
from ansible_collections.containers.podman.plugins.connection.podman import Connection as PodmanConnection

display = Display()

# What podman sets for the container's first process only; ``podman exec`` leaves them out.
_FIRST_PROCESS_ONLY = ("HOSTNAME=", "container_uuid=")


class Connection(PodmanConnection):
    """containers.podman.podman, entering the container with nsenter and passing modules on stdin."""

    transport = "podman"
    has_pipelining = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._pid = 0
        self._environment: dict[str, str] = {}
        self._nsenter = ""

    def _connect(self):
        """Find the container's first process and its environment (one podman inspect)."""
        if self._connected:
            return self
        form = '{"pid": {{.State.Pid}}, "env": {{json .Config.Env}}}'
        rc, out, err = self._podman("inspect", ["--type", "container", "--format", form])
        found = json.loads(out) if rc == 0 else {}
        if not found.get("pid"):
            message = to_native(err).strip() or "it is not running"
            raise AnsibleConnectionFailure(f"cannot reach the lab container {self._container_id}: {message}")
        self._pid = found["pid"]
        self._environment = dict(
            item.split("=", 1) for item in found["env"] or [] if not item.startswith(_FIRST_PROCESS_ONLY)
        )
        # The first process's view of the file system, with the container's own mounts (its /tmp is a tmpfs that
        # the image's overlay does not show); bytes, as containers.podman.podman joins it with paths as bytes.
        self._mount_point = to_bytes(f"/proc/{self._pid}/root")
        self._nsenter = get_bin_path("nsenter")
        self._connected = True
        return self

    @ensure_connect
    def exec_command(self, cmd, in_data=None, sudoable=False):
        """Run ``cmd`` in the container's namespaces; ``in_data`` (a pipelined module) goes to its stdin."""
        arguments = shlex.split(to_native(cmd, errors="surrogate_or_strict"))
        if self.user:
            return self._podman(["exec", "--interactive", "--user", self.user], arguments, in_data)
        command = [self._nsenter, "--target", str(self._pid), "--all", "--wd", "--", *arguments]
        display.vvv(f"RUN {command}", host=self._container_id)
        process = subprocess.Popen(
            [to_bytes(part, errors="surrogate_or_strict") for part in command],
            env=self._environment,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        stdout, stderr = process.communicate(input=in_data)
        return process.returncode, stdout, stderr
