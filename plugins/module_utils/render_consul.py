# Copyright (c) vmmesh.mesh contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Consul service definitions, one file per service instance: ``<consul dir>/vmmesh-<service>.json``.

The registered address and port are the instance's mesh address and its sidecar's inbound mTLS port, so that
``<service>.service.<dc>.<domain>`` (and ``<subset>.<service>.service...`` through the subset tags) resolve to what
clients' sidecars dial. Two checks: the application's own health (HTTP, gRPC or TCP against its local port) and the
sidecar's inbound port (TCP).

With ``mesh.metrics.expose`` (the sidecars' metrics endpoints bound to the mesh address), the metrics endpoints too,
for Prometheus' ``consul_sd_configs`` (see docs/consul.md for the contract): ``vmmesh-envoy-metrics-<service>.json``
per Envoy instance and ``vmmesh-haproxy-metrics.json`` per HAProxy host, tagged ``vmmesh-metrics``, with the meta
``metrics_path``, ``metrics_scheme``, ``vmmesh_service`` and ``vmmesh_sidecar``.
"""

from __future__ import annotations

from ansible_collections.vmmesh.mesh.plugins.module_utils.mesh_model import format_duration
from ansible_collections.vmmesh.mesh.plugins.module_utils.mesh_planner import (
    HostPlan,
    InstancePlan,
    MeshPlan,
    ServicePlan,
    host_port,
)
from ansible_collections.vmmesh.mesh.plugins.module_utils.render_yaml import to_json

METRICS_TAG = "vmmesh-metrics"
ENVOY_METRICS_SERVICE = "vmmesh-envoy-metrics"
HAPROXY_METRICS_SERVICE = "vmmesh-haproxy-metrics"


def definition_path(plan: MeshPlan, service: str) -> str:
    return f"{plan.model.paths.consul}/vmmesh-{service}.json"


def metrics_definition(
    mesh: str, service_id: str, name: str, address: str, port: int, path: str, scheme: str, meta: dict[str, str]
) -> dict:
    """A metrics endpoint as Prometheus' Consul discovery selects it (tag ``vmmesh-metrics``), with a TCP check."""
    return {
        "service": {
            "id": service_id,
            "name": name,
            "address": address,
            "port": port,
            "tags": [METRICS_TAG],
            "meta": dict(sorted({**meta, "vmmesh_mesh": mesh, "metrics_path": path, "metrics_scheme": scheme}.items())),
            "checks": [
                {
                    "id": f"{service_id}-port",
                    "name": f"{name} port",
                    "tcp": host_port(address, port),
                    "interval": "10s",
                    "timeout": "2s",
                }
            ],
        }
    }


def metrics_definitions(plan: MeshPlan, host_plan: HostPlan) -> dict[str, dict]:
    """The host's sidecar metrics endpoints by file name; none unless ``mesh.metrics.expose``."""
    if not plan.model.metrics.expose:
        return {}
    mesh, path = plan.model.name, plan.model.metrics.path
    definitions = {}
    for instance in host_plan.instances:
        if instance.sidecar == "envoy":
            service_id = f"{ENVOY_METRICS_SERVICE}-{instance.service}"
            definitions[f"{service_id}.json"] = metrics_definition(
                mesh,
                service_id,
                ENVOY_METRICS_SERVICE,
                host_plan.address,
                instance.metrics_port,
                path,
                "http",
                {"vmmesh_service": instance.service, "vmmesh_sidecar": "envoy"},
            )
    if host_plan.haproxy is not None:
        definitions[f"{HAPROXY_METRICS_SERVICE}.json"] = metrics_definition(
            mesh,
            HAPROXY_METRICS_SERVICE,
            HAPROXY_METRICS_SERVICE,
            host_plan.address,
            host_plan.haproxy.metrics_port,
            path,
            "http",
            {"vmmesh_service": ",".join(host_plan.haproxy.services), "vmmesh_sidecar": "haproxy"},
        )
    return definitions


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
        result["http"] = f"http://{target}{check.http_path}"
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
    """Service definitions of every instance on ``host`` and of its exposed metrics endpoints, by absolute path."""
    host_plan = plan.hosts[host]
    files = {
        definition_path(plan, instance.service): to_json(service_definition(plan, instance))
        for instance in host_plan.instances
    }
    for name, definition in metrics_definitions(plan, host_plan).items():
        files[f"{plan.model.paths.consul}/{name}"] = to_json(definition)
    return files
