"""Consul definitions, Prometheus targets, topology, plan.json and the bundle."""

from __future__ import annotations

import copy
import json

import pytest
from ansible_collections.vmmesh.mesh.plugins.module_utils.mesh_compiler import compile_mesh, render_bundle, render_host
from ansible_collections.vmmesh.mesh.plugins.module_utils.mesh_planner import plan_mesh
from ansible_collections.vmmesh.mesh.plugins.module_utils.render_consul import render_consul_host
from ansible_collections.vmmesh.mesh.plugins.module_utils.render_plan import plan_document
from ansible_collections.vmmesh.mesh.plugins.module_utils.render_prometheus import (
    mesh_targets,
    render_prometheus_host,
)
from ansible_collections.vmmesh.mesh.plugins.module_utils.render_topology import render_dot, render_mermaid


def test_consul_service_definition(shop: tuple) -> None:
    plan = plan_mesh(*shop)
    files = render_consul_host(plan, "api1")
    assert list(files) == ["/etc/consul.d/vmmesh-api.json"]
    service = json.loads(files["/etc/consul.d/vmmesh-api.json"])["service"]
    port = plan.services["api"].inbound_port
    assert service == {
        "id": "api",
        "name": "api",
        "address": "10.0.0.1",
        "port": port,
        "tags": ["grpc", "v1", "vmmesh"],
        "meta": {
            "vmmesh_app_port": "8081",
            "vmmesh_identity": "spiffe://shop.mesh/ns/default/dc/dc1/svc/api",
            "vmmesh_mesh": "shop",
            "vmmesh_protocol": "grpc",
            "vmmesh_sidecar": "envoy",
        },
        "checks": [
            {"id": "api-app", "name": "api application", "tcp": "127.0.0.1:8081", "interval": "10s", "timeout": "2s"},
            {
                "id": "api-sidecar",
                "name": "api envoy sidecar",
                "tcp": f"10.0.0.1:{port}",
                "interval": "10s",
                "timeout": "2s",
            },
        ],
    }


@pytest.mark.parametrize(
    ("check", "expected"),
    [
        (
            {"path": "/healthz", "interval": "5s", "timeout": "1s"},
            {"http": "http://127.0.0.1:8081/healthz", "method": "GET"},
        ),
        ({"type": "grpc"}, {"grpc": "127.0.0.1:8081", "grpc_use_tls": False}),
    ],
)
def test_consul_application_checks(shop: tuple, check: dict, expected: dict) -> None:
    mesh, groups, hostvars = shop
    mesh["services"]["api"]["health_check"] = check
    mesh["services"]["api"]["tags"] = ["team-a"]
    mesh["services"]["api"]["meta"] = {"owner": "team-a"}
    service = json.loads(render_consul_host(plan_mesh(mesh, groups, hostvars), "api2")["/etc/consul.d/vmmesh-api.json"])
    app = service["service"]["checks"][0]
    assert {key: app[key] for key in expected} == expected
    assert service["service"]["tags"] == ["grpc", "team-a", "v2", "vmmesh"]
    assert service["service"]["meta"]["owner"] == "team-a"


def test_prometheus_targets(shop: tuple) -> None:
    mesh, groups, hostvars = shop
    plan = plan_mesh(mesh, groups, hostvars)
    groups_api = json.loads(render_prometheus_host(plan, "api1")["/etc/prometheus/file_sd/vmmesh.json"])
    metrics = plan.services["api"].instances[0].metrics_port
    assert groups_api == [
        {
            "targets": [f"127.0.0.1:{metrics}"],
            "labels": {
                "mesh": "shop",
                "host": "api1",
                "service": "api",
                "sidecar": "envoy",
                "__metrics_path__": "/metrics",
            },
        }
    ]
    assert mesh_targets(plan) == []
    mesh["metrics"] = {"expose": True}
    exposed = mesh_targets(plan_mesh(mesh, groups, hostvars))
    assert [(group["labels"]["host"], group["labels"]["sidecar"]) for group in exposed] == [
        ("api1", "envoy"),
        ("api2", "envoy"),
        ("db1", "envoy"),
        ("web1", "haproxy"),
        ("web2", "haproxy"),
    ]
    assert exposed[0]["targets"] == [f"10.0.0.1:{metrics}"]


def test_topology(shop: tuple) -> None:
    mesh, groups, hostvars = shop
    mesh["intentions"].pop(0)
    mesh["denied_upstream"] = "warning"
    plan = plan_mesh(mesh, groups, hostvars)
    mermaid = render_mermaid(plan)
    assert mermaid.splitlines()[1:] == [
        "flowchart LR",
        '  svc_api["api<br/>grpc · envoy · 2 instances"]:::envoy',
        '  svc_db["db<br/>tcp · envoy · 1 instance"]:::envoy',
        '  svc_web["web<br/>http · haproxy · 2 instances"]:::haproxy',
        '  svc_api -->|"9003"| svc_db',
        '  svc_web -.->|"9001 denied"| svc_api',
        '  svc_web -->|"9002"| svc_db',
        "  classDef envoy stroke:#ac6199,stroke-width:2px",
        "  classDef haproxy stroke:#106da9,stroke-width:2px",
    ]
    dot = render_dot(plan)
    assert 'digraph "shop" {' in dot
    assert '  "web" [label="web\\nhttp · haproxy · 2 instances", color="#106da9", penwidth=2];' in dot
    assert '  "web" -> "api" [label="9001 denied", style=dashed, color="#c0392b"];' in dot
    assert '  "api" -> "db" [label="9003"];' in dot


def test_plan_document_has_the_documented_shape(shop: tuple) -> None:
    plan = plan_mesh(*shop)
    document = plan_document(plan)
    assert set(document) == {"format_version", "mesh", "services", "hosts", "edges", "rollout", "drained", "warnings"}
    api = document["services"]["api"]
    assert api["identity"] == "spiffe://shop.mesh/ns/default/dc/dc1/svc/api"
    assert api["protocol"] == "grpc"
    for instance in api["instances"]:
        assert {"host", "address", "port", "sidecar", "inbound_port"} <= set(instance)
    assert api["instances"][0]["port"] == 8081 and api["instances"][0]["sidecar"] == "envoy"
    listeners = document["hosts"]["web1"]["listeners"]
    assert {listener["kind"] for listener in listeners} == {"inbound", "outbound", "admin", "metrics"}
    for listener in listeners:
        assert set(listener) == {"kind", "address", "port", "service", "upstream"}
        assert (listener["upstream"] is not None) == (listener["kind"] == "outbound")
    assert document["edges"] == [
        {"source": "api", "destination": "db", "local_port": 9003},
        {"source": "web", "destination": "api", "local_port": 9001},
        {"source": "web", "destination": "db", "local_port": 9002},
    ]
    assert json.loads(render_bundle(plan)["plan.json"]) == document


def test_bundle_layout_and_byte_identical_output(shop: tuple) -> None:
    mesh, groups, hostvars = shop
    bundle = render_bundle(compile_mesh(mesh, groups, hostvars))
    assert {"plan.json", "graph.mmd", "graph.dot", "prometheus/vmmesh.json"} <= set(bundle)
    assert "hosts/web1/etc/haproxy/haproxy.cfg" in bundle
    assert "hosts/api1/etc/envoy/api/lds.yaml" in bundle
    assert "hosts/db1/etc/consul.d/vmmesh-db.json" in bundle
    assert all(
        path.startswith("hosts/")
        for path in set(bundle) - {"plan.json", "graph.mmd", "graph.dot", "prometheus/vmmesh.json"}
    )
    again = render_bundle(compile_mesh(copy.deepcopy(mesh), dict(groups), dict(hostvars)))
    assert again == bundle
    assert list(again) == list(bundle)
    only = render_bundle(compile_mesh(mesh, groups, hostvars), ["db1"])
    assert {path for path in only if path.startswith("hosts/")} == {
        path for path in bundle if path.startswith("hosts/db1/")
    }


def test_render_host_kinds(shop: tuple) -> None:
    plan = compile_mesh(*shop)
    assert list(render_host(plan, "web1", ["consul"])) == ["/etc/consul.d/vmmesh-web.json"]
    assert sorted(render_host(plan, "web1")) == [
        "/etc/consul.d/vmmesh-web.json",
        "/etc/haproxy/haproxy.cfg",
        "/etc/prometheus/file_sd/vmmesh.json",
    ]


def test_metrics_endpoints_are_not_registered_unless_exposed(shop: tuple) -> None:
    plan = plan_mesh(*shop)
    assert list(render_consul_host(plan, "web1")) == ["/etc/consul.d/vmmesh-web.json"]


def test_metrics_endpoints_registered_for_prometheus(shop: tuple) -> None:
    mesh, groups, hostvars = shop
    mesh["metrics"] = {"expose": True, "path": "/metrics"}
    plan = plan_mesh(mesh, groups, hostvars)
    files = render_consul_host(plan, "api1")
    assert sorted(files) == ["/etc/consul.d/vmmesh-api.json", "/etc/consul.d/vmmesh-envoy-metrics-api.json"]
    envoy = json.loads(files["/etc/consul.d/vmmesh-envoy-metrics-api.json"])["service"]
    port = plan.services["api"].instances[0].metrics_port
    assert envoy == {
        "id": "vmmesh-envoy-metrics-api",
        "name": "vmmesh-envoy-metrics",
        "address": "10.0.0.1",
        "port": port,
        "tags": ["vmmesh-metrics"],
        "meta": {
            "metrics_path": "/metrics",
            "metrics_scheme": "http",
            "vmmesh_mesh": "shop",
            "vmmesh_service": "api",
            "vmmesh_sidecar": "envoy",
        },
        "checks": [
            {
                "id": "vmmesh-envoy-metrics-api-port",
                "name": "vmmesh-envoy-metrics port",
                "tcp": f"10.0.0.1:{port}",
                "interval": "10s",
                "timeout": "2s",
            }
        ],
    }
    web = render_consul_host(plan, "web1")
    haproxy = json.loads(web["/etc/consul.d/vmmesh-haproxy-metrics.json"])["service"]
    assert (haproxy["id"], haproxy["name"], haproxy["port"]) == (
        "vmmesh-haproxy-metrics",
        "vmmesh-haproxy-metrics",
        plan.hosts["web1"].haproxy.metrics_port,
    )
    assert haproxy["meta"]["vmmesh_service"] == "web" and haproxy["meta"]["vmmesh_sidecar"] == "haproxy"
    assert haproxy["tags"] == ["vmmesh-metrics"]
