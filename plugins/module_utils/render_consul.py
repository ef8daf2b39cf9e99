# Copyright (c) vmmesh.mesh contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Consul service definitions, one file per service instance: ``<consul dir>/vmmesh-<service>.json``.

The registered address and port are the instance's mesh address and its sidecar's inbound mTLS port, so that
``<service>.service.<dc>.<domain>`` (and ``<subset>.<service>.service...`` through the subset tags) resolve to what
clients' sidecars dial. Two checks: the application's own health (HTTP, gRPC or TCP against its local port) and the
sidecar's inbound port (TCP).
"""

from __future__ import annotations

from ansible_collections.vmmesh.mesh.plugins.module_utils.mesh_model import format_duration
from ansible_collections.vmmesh.mesh.plugins.module_utils.mesh_planner import (
    InstancePlan,
    MeshPlan,
    ServicePlan,
    host_port,
)
from ansible_collections.vmmesh.mesh.plugins.module_utils.render_yaml import to_json


def definition_path(plan: MeshPlan, service: str) -> str:
    return f"{plan.model.paths.consul}/vmmesh-{service}.json"


def service_definition(plan: MeshPlan, instance: InstancePlan) -> dict:
    service = plan.services[instance.service]
    meta = dict(service.meta)
    meta.update(
        {
            "vmmesh_mesh": plan.model.name,
            "vmmesh_identity": service.identity,
            "vmmesh_protocol": service.protocol,
            "vmmesh_sidecar": instance.sidecar,
            "vmmesh_app_port": str(service.app_port),
        }
    )
    return {
        "service": {
            "id": service.name,
            "name": service.name,
            "address": instance.address,
            "port": instance.inbound_port,
            "tags": sorted(set(service.tags) | set(instance.subsets) | {"vmmesh", service.protocol}),
            "meta": dict(sorted(meta.items())),
            "checks": [_app_check(service), _sidecar_check(instance)],
        }
    }


def _app_check(service: ServicePlan) -> dict:
    check = service.health_check
    target = host_port(service.app_address, service.app_port)
    result = {
        "id": f"{service.name}-app",
        "name": f"{service.name} application",
        "interval": format_duration(check.interval_ms),
        "timeout": format_duration(check.timeout_ms),
    }
    if check.type == "http":
        result["http"] = "http://{}{}".format(target, check.path or "/")
        result["method"] = "GET"
    elif check.type == "grpc":
        result["grpc"] = target
        result["grpc_use_tls"] = False
    else:
        result["tcp"] = target
    return result


def _sidecar_check(instance: InstancePlan) -> dict:
    return {
        "id": f"{instance.service}-sidecar",
        "name": f"{instance.service} {instance.sidecar} sidecar",
        "tcp": host_port(instance.address, instance.inbound_port),
        "interval": "10s",
        "timeout": "2s",
    }


def render_consul_host(plan: MeshPlan, host: str) -> dict[str, str]:
    """Service definitions of every instance on ``host``, by absolute path."""
    return {
        definition_path(plan, instance.service): to_json(service_definition(plan, instance))
        for instance in plan.hosts[host].instances
    }
