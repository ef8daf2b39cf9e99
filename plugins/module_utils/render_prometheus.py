# Copyright (c) vmmesh.mesh contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Prometheus scrape targets as ``file_sd`` JSON.

* per host, ``<prometheus dir>/vmmesh.json``: the metrics endpoints of that host's sidecars at the address they bind
  (127.0.0.1 unless ``mesh.metrics.expose``), for a Prometheus or agent running on the host;
* mesh-wide, ``prometheus/vmmesh.json``: every endpoint at its mesh address, for a central Prometheus; empty unless
  ``mesh.metrics.expose`` is true (an endpoint bound to 127.0.0.1 cannot be scraped from elsewhere).
"""

from __future__ import annotations

from ansible_collections.vmmesh.mesh.plugins.module_utils.mesh_planner import HostPlan, MeshPlan, host_port
from ansible_collections.vmmesh.mesh.plugins.module_utils.render_yaml import to_json

MESH_TARGETS_FILE = "prometheus/vmmesh.json"


def targets_path(plan: MeshPlan) -> str:
    return plan.model.paths.prometheus + "/vmmesh.json"


def host_targets(plan: MeshPlan, host_plan: HostPlan, remote: bool = False) -> list[dict]:
    """Target groups of one host; ``remote`` uses the mesh address instead of the bound address."""
    labels = {"mesh": plan.model.name, "host": host_plan.name, "__metrics_path__": plan.model.metrics.path}
    groups = []
    for instance in host_plan.instances:
        if instance.sidecar == "envoy":
            address = host_plan.address if remote else instance.metrics_address
            groups.append(
                {
                    "targets": [host_port(address, instance.metrics_port)],
                    "labels": dict(labels, service=instance.service, sidecar="envoy"),
                }
            )
    if host_plan.haproxy is not None:
        address = host_plan.address if remote else host_plan.haproxy.metrics_address
        groups.append(
            {
                "targets": [host_port(address, host_plan.haproxy.metrics_port)],
                "labels": dict(labels, service=",".join(host_plan.haproxy.services), sidecar="haproxy"),
            }
        )
    return groups


def render_prometheus_host(plan: MeshPlan, host: str) -> dict[str, str]:
    groups = host_targets(plan, plan.hosts[host])
    return {targets_path(plan): to_json(groups)}


def mesh_targets(plan: MeshPlan) -> list[dict]:
    """Target groups of every host at its mesh address; empty unless ``mesh.metrics.expose`` is true."""
    groups: list[dict] = []
    if plan.model.metrics.expose:
        for name in sorted(plan.hosts):
            groups.extend(host_targets(plan, plan.hosts[name], remote=True))
    return groups


def render_prometheus_mesh(plan: MeshPlan) -> str:
    return to_json(mesh_targets(plan))
