# Copyright (c) vmmesh.mesh contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The compiler's front door: ``mesh`` + inventory -> plan -> every rendered file.

Layout of a rendered bundle (the keys of :func:`render_bundle`, relative paths)::

    plan.json                         the plan (render_plan)
    graph.mmd, graph.dot              the topology (render_topology)
    prometheus/vmmesh.json            mesh-wide scrape targets (render_prometheus)
    hosts/<host>/<absolute path>      every file of every host, at its path on the host without the leading '/'
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ansible_collections.vmmesh.mesh.plugins.module_utils.mesh_planner import MeshPlan, plan_mesh
from ansible_collections.vmmesh.mesh.plugins.module_utils.render_consul import render_consul_host
from ansible_collections.vmmesh.mesh.plugins.module_utils.render_envoy import EnvoyRenderer, render_envoy_host
from ansible_collections.vmmesh.mesh.plugins.module_utils.render_haproxy import render_haproxy_host
from ansible_collections.vmmesh.mesh.plugins.module_utils.render_plan import render_plan_json
from ansible_collections.vmmesh.mesh.plugins.module_utils.render_prometheus import (
    MESH_TARGETS_FILE,
    render_prometheus_host,
    render_prometheus_mesh,
)
from ansible_collections.vmmesh.mesh.plugins.module_utils.render_topology import render_dot, render_mermaid

HOST_RENDERERS: dict[str, Callable[[MeshPlan, str], dict[str, str]]] = {
    "envoy": render_envoy_host,
    "haproxy": render_haproxy_host,
    "consul": render_consul_host,
    "prometheus": render_prometheus_host,
}


def compile_mesh(mesh: Any, groups: Mapping[str, Any] | None, hostvars: Mapping[str, Any] | None) -> MeshPlan:
    """Validate and plan; raises ``MeshValidationError`` listing every error."""
    return plan_mesh(mesh, groups, hostvars)


def render_host(
    plan: MeshPlan, host: str, kinds: Iterable[str] | None = None, envoy: EnvoyRenderer | None = None
) -> dict[str, str]:
    """Files of one host by absolute path; ``kinds`` limits them to some of envoy, haproxy, consul, prometheus.

    Pass one ``envoy`` renderer when rendering many hosts of the same plan: it reuses what instances share.
    """
    files: dict[str, str] = {}
    for kind in sorted(HOST_RENDERERS if kinds is None else kinds):
        if kind == "envoy" and envoy is not None:
            files.update(envoy.host_files(host))
        else:
            files.update(HOST_RENDERERS[kind](plan, host))
    return dict(sorted(files.items()))


def render_bundle(plan: MeshPlan, hosts: Iterable[str] | None = None) -> dict[str, str]:
    """Every rendered file, by path relative to the render directory."""
    bundle = {
        "plan.json": render_plan_json(plan),
        "graph.mmd": render_mermaid(plan),
        "graph.dot": render_dot(plan),
        MESH_TARGETS_FILE: render_prometheus_mesh(plan),
    }
    envoy = EnvoyRenderer(plan)
    for host in sorted(plan.hosts if hosts is None else hosts):
        for path, content in render_host(plan, host, envoy=envoy).items():
            bundle["hosts/{}/{}".format(host, path.lstrip("/"))] = content
    return bundle
