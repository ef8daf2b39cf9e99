# Copyright (c) vmmesh.mesh contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Filters that open the mesh compiler to playbooks and roles.

Each filter takes the ``mesh`` variable with the inventory's ``groups`` and ``hostvars``, validates and plans the whole
mesh (so that every error anywhere is reported), and returns one view of the result. The documentation of each filter
is in the YAML file of the same name beside this one.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping
from typing import Any

from ansible.errors import AnsibleFilterError
from ansible.utils.display import Display
from ansible_collections.vmmesh.mesh.plugins.module_utils.mesh_compiler import compile_mesh, render_bundle, render_host
from ansible_collections.vmmesh.mesh.plugins.module_utils.mesh_errors import MeshValidationError
from ansible_collections.vmmesh.mesh.plugins.module_utils.mesh_planner import MeshPlan
from ansible_collections.vmmesh.mesh.plugins.module_utils.render_envoy import keep_current_clusters
from ansible_collections.vmmesh.mesh.plugins.module_utils.render_haproxy import render_haproxy_host
from ansible_collections.vmmesh.mesh.plugins.module_utils.render_plan import plan_document
from ansible_collections.vmmesh.mesh.plugins.module_utils.render_prometheus import host_targets, mesh_targets
from ansible_collections.vmmesh.mesh.plugins.module_utils.render_topology import render_dot, render_mermaid

_display = Display()
_KINDS = ("consul", "envoy", "haproxy", "prometheus")
_TOPOLOGY_FORMATS: dict[str, Callable[[MeshPlan], str]] = {"mermaid": render_mermaid, "dot": render_dot}


def _plan(mesh: Any, groups: Any, hostvars: Any, name: str) -> MeshPlan:
    if not isinstance(groups, Mapping) or not isinstance(hostvars, Mapping):
        raise AnsibleFilterError(f"{name}: pass the inventory as mesh | vmmesh.mesh.{name}(groups, hostvars)")
    try:
        plan = compile_mesh(mesh, groups, hostvars)
    except MeshValidationError as error:
        raise AnsibleFilterError(f"{name}: {error}") from None
    for warning in plan.warnings:
        _display.warning(f"vmmesh.mesh: {warning}")
    return plan


def _host(plan: MeshPlan, host: Any, name: str) -> str:
    if not isinstance(host, str) or host not in plan.hosts:
        known = ", ".join(sorted(plan.hosts)) or "none"
        raise AnsibleFilterError(f"{name}: host {host!r} runs no mesh service (hosts with services: {known})")
    return host


def _inventory_host(plan: MeshPlan, host: Any, hostvars: Mapping, name: str) -> str | None:
    """``host`` when it runs mesh services; None for an inventory host that runs none (its sidecars and
    registrations are to be removed); an error for a name the inventory does not know."""
    if isinstance(host, str) and host not in plan.hosts and host in hostvars:
        return None
    return _host(plan, host, name)


def mesh_plan(mesh: Any, groups: Mapping, hostvars: Mapping) -> dict:
    """The plan as data (the content of plan.json)."""
    return plan_document(_plan(mesh, groups, hostvars, "mesh_plan"))


def mesh_render(mesh: Any, groups: Mapping, hostvars: Mapping, hosts: list[str] | None = None) -> dict[str, str]:
    """Every rendered file by path relative to a render directory (what playbooks/render.yml writes)."""
    plan = _plan(mesh, groups, hostvars, "mesh_render")
    if hosts is not None:
        hosts = [_host(plan, host, "mesh_render") for host in hosts]
    return render_bundle(plan, hosts)


def mesh_host_files(
    mesh: Any, groups: Mapping, hostvars: Mapping, host: str, kinds: list[str] | None = None
) -> dict[str, str]:
    """Every file one host needs, by absolute path; ``kinds`` narrows to envoy, haproxy, consul, prometheus.
    An inventory host that runs no mesh service needs none."""
    plan = _plan(mesh, groups, hostvars, "mesh_host_files")
    if kinds is not None:
        unknown = [kind for kind in kinds if kind not in _KINDS]
        if unknown:
            raise AnsibleFilterError(f"mesh_host_files: unknown kinds {unknown}; use some of {', '.join(_KINDS)}")
    found = _inventory_host(plan, host, hostvars, "mesh_host_files")
    return {} if found is None else render_host(plan, found, kinds)


def mesh_envoy_files(mesh: Any, groups: Mapping, hostvars: Mapping, host: str) -> dict[str, str]:
    """The files of every Envoy sidecar on ``host`` (bootstrap, LDS, CDS, SDS), by absolute path; none for an
    inventory host that runs no mesh service."""
    plan = _plan(mesh, groups, hostvars, "mesh_envoy_files")
    found = _inventory_host(plan, host, hostvars, "mesh_envoy_files")
    return {} if found is None else render_host(plan, found, ["envoy"])


def mesh_haproxy_config(mesh: Any, groups: Mapping, hostvars: Mapping, host: str) -> str:
    """The haproxy.cfg of ``host``; empty when no haproxy-sidecar service runs there."""
    plan = _plan(mesh, groups, hostvars, "mesh_haproxy_config")
    found = _inventory_host(plan, host, hostvars, "mesh_haproxy_config")
    files = {} if found is None else render_haproxy_host(plan, found)
    return next(iter(files.values()), "")


def mesh_consul_files(mesh: Any, groups: Mapping, hostvars: Mapping, host: str) -> dict[str, str]:
    """The Consul service definitions of ``host``, by absolute path; none for an inventory host that runs no mesh
    service."""
    plan = _plan(mesh, groups, hostvars, "mesh_consul_files")
    found = _inventory_host(plan, host, hostvars, "mesh_consul_files")
    return {} if found is None else render_host(plan, found, ["consul"])


def mesh_prometheus_targets(mesh: Any, groups: Mapping, hostvars: Mapping, host: str | None = None) -> list[dict]:
    """Prometheus file_sd target groups of ``host`` (as bound), or of the whole mesh (exposed endpoints only)."""
    plan = _plan(mesh, groups, hostvars, "mesh_prometheus_targets")
    if host is None:
        return mesh_targets(plan)
    return host_targets(plan, plan.hosts[_host(plan, host, "mesh_prometheus_targets")])


def mesh_topology(mesh: Any, groups: Mapping, hostvars: Mapping, format: str = "mermaid") -> str:
    """The topology as Mermaid (``format='mermaid'``) or Graphviz DOT (``format='dot'``)."""
    if format not in _TOPOLOGY_FORMATS:
        raise AnsibleFilterError(f"mesh_topology: unknown format {format!r}; use mermaid or dot")
    return _TOPOLOGY_FORMATS[format](_plan(mesh, groups, hostvars, "mesh_topology"))


def envoy_keep_clusters(files: Mapping[str, str], current: Mapping[str, str]) -> dict[str, str]:
    """``files`` (Envoy files by path) with each ``cds.yaml`` also keeping the clusters of the running one
    (``current``: base64 file contents by path, as ``ansible.builtin.slurp`` returns them)."""
    if not isinstance(files, Mapping) or not isinstance(current, Mapping):
        raise AnsibleFilterError("envoy_keep_clusters: pass the files by path and the current files by path")
    kept = dict(files)
    for path, encoded in current.items():
        if path in kept and path.endswith("/cds.yaml"):
            text = base64.b64decode(str(encoded)).decode("utf-8", errors="replace")
            kept[path] = keep_current_clusters(kept[path], text)
    return kept


class FilterModule:
    """The mesh compiler's filters."""

    def filters(self) -> dict[str, Callable]:
        return {
            "envoy_keep_clusters": envoy_keep_clusters,
            "mesh_plan": mesh_plan,
            "mesh_render": mesh_render,
            "mesh_host_files": mesh_host_files,
            "mesh_envoy_files": mesh_envoy_files,
            "mesh_haproxy_config": mesh_haproxy_config,
            "mesh_consul_files": mesh_consul_files,
            "mesh_prometheus_targets": mesh_prometheus_targets,
            "mesh_topology": mesh_topology,
        }
