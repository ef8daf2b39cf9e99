# Copyright (c) vmmesh.mesh contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The plan as plain data (``plan.json``): what every service and host gets, in JSON types only.

Shape (``format_version`` 1), every list sorted::

    mesh:      {name, trust_domain, datacenter, discovery, default_policy, default_sidecar, consul_domain,
                tracing: {enabled, sampling, backend: {host, address, port} | null}}
    services:  name -> {identity, dns_name, protocol, sidecar, inbound_port, port,
                        instances: [{host, address, port, sidecar, inbound_port, admin_port, metrics_port, subsets}],
                        upstreams: [{service, local_port, allowed}],
                        tracing: {sampling, backend: "address:port"} | null,
                        authorization: {default, rules: [{source, identity, action, paths, methods}]}}
    hosts:     name -> {address, services, listeners: [{kind, address, port, service, upstream}]}
    edges:     [{source, destination, local_port}]   (declared upstreams the intentions allow)
    rollout:   [host]   (the order for a rollout: hosts of called services before their callers)
    drained:   [host]   (hosts kept out of the mesh by their variable mesh_drained; they run no instance)
    warnings:  [message]
"""

from __future__ import annotations

from ansible_collections.vmmesh.mesh.plugins.module_utils.mesh_planner import (
    HostPlan,
    MeshPlan,
    ServicePlan,
    host_listeners,
    rollout_order,
)
from ansible_collections.vmmesh.mesh.plugins.module_utils.render_yaml import to_json

FORMAT_VERSION = 1


def _service(service: ServicePlan) -> dict:
    return {
        "identity": service.identity,
        "dns_name": service.dns_name,
        "protocol": service.protocol,
        "sidecar": service.sidecar,
        "port": service.app_port,
        "inbound_port": service.inbound_port,
        "instances": [
            {
                "host": item.host,
                "address": item.address,
                "port": service.app_port,
                "sidecar": item.sidecar,
                "inbound_port": item.inbound_port,
                "admin_port": item.admin_port,
                "metrics_port": item.metrics_port,
                "subsets": list(item.subsets),
            }
            for item in service.instances
        ],
        "upstreams": [
            {"service": upstream.service, "local_port": upstream.local_port, "allowed": upstream.allowed}
            for upstream in service.upstreams
        ],
        "tracing": None
        if service.tracing is None
        else {
            "sampling": service.tracing.sampling,
            "backend": f"{service.tracing.backend_address}:{service.tracing.backend_port}",
        },
        "authorization": {
            "default": service.authorization.default_action,
            "rules": [
                {
                    "source": rule.source,
                    "identity": rule.identity,
                    "action": rule.action,
                    "paths": list(rule.paths),
                    "methods": list(rule.methods),
                }
                for rule in service.authorization.rules
            ],
        },
    }


def _host(plan: MeshPlan, host: HostPlan) -> dict:
    return {
        "address": host.address,
        "services": [instance.service for instance in host.instances],
        "listeners": [
            {
                "kind": listener.kind,
                "address": listener.address,
                "port": listener.port,
                "service": listener.service,
                "upstream": listener.upstream,
            }
            for listener in host_listeners(plan, host.name)
        ],
    }


def plan_document(plan: MeshPlan) -> dict:
    model = plan.model
    return {
        "format_version": FORMAT_VERSION,
        "mesh": {
            "name": model.name,
            "trust_domain": model.trust_domain,
            "datacenter": model.datacenter,
            "discovery": model.discovery,
            "default_policy": model.default_policy,
            "default_sidecar": model.default_sidecar,
            "consul_domain": model.consul.domain,
            "tracing": {
                "enabled": model.tracing.enabled,
                "sampling": model.tracing.sampling,
                "backend": None
                if model.tracing.backend is None
                else {
                    "host": model.tracing.backend.host,
                    "address": model.tracing.backend.address,
                    "port": model.tracing.backend.port,
                },
            },
        },
        "services": {name: _service(plan.services[name]) for name in sorted(plan.services)},
        "hosts": {name: _host(plan, plan.hosts[name]) for name in sorted(plan.hosts)},
        "edges": [
            {"source": edge.source, "destination": edge.destination, "local_port": edge.local_port}
            for edge in sorted(plan.edges, key=lambda edge: (edge.source, edge.destination))
        ],
        "rollout": rollout_order(plan),
        "drained": sorted(model.drained_hosts),
        "warnings": list(plan.warnings),
    }


def render_plan_json(plan: MeshPlan) -> str:
    return to_json(plan_document(plan))
