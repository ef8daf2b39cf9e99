"""Tracing: the model's keys and errors, the plan, and what the Envoy and HAProxy renderers make of it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from ansible_collections.vmmesh.mesh.plugins.module_utils import mesh_errors as errors
from ansible_collections.vmmesh.mesh.plugins.module_utils.mesh_errors import MeshValidationError
from ansible_collections.vmmesh.mesh.plugins.module_utils.mesh_planner import MeshPlan, plan_mesh
from ansible_collections.vmmesh.mesh.plugins.module_utils.render_envoy import (
    TRACING_CLUSTER,
    clusters,
    listeners,
    render_envoy_host,
)
from ansible_collections.vmmesh.mesh.plugins.module_utils.render_haproxy import render_haproxy_host
from ansible_collections.vmmesh.mesh.plugins.module_utils.render_plan import plan_document

_HCM = "envoy.filters.network.http_connection_manager"
_BACKEND = {"host": "db1", "port": 9411}


def _errors(mesh: Any, groups: dict, hostvars: dict) -> list[errors.MeshError]:
    with pytest.raises(MeshValidationError) as caught:
        plan_mesh(mesh, groups, hostvars)
    return caught.value.errors


def _only(found: list[errors.MeshError]) -> errors.MeshError:
    assert len(found) == 1, [str(error) for error in found]
    return found[0]


def _instance(plan: MeshPlan, service: str, host: str):
    return next(item for item in plan.services[service].instances if item.host == host)


def _managers(plan: MeshPlan, service: str, host: str) -> dict[str, dict]:
    """The HTTP connection managers of one sidecar by listener name."""
    found = {}
    for listener in listeners(plan, _instance(plan, service, host)):
        for chain in listener["filter_chains"]:
            for item in chain["filters"]:
                if item["name"] == _HCM:
                    found[listener["name"]] = item["typed_config"]
    return found


def _traced_shop(shop: tuple, **tracing: Any) -> tuple[dict, dict, dict]:
    mesh, groups, hostvars = shop
    mesh["tracing"] = {"enabled": True, "sampling": 10, "backend": dict(_BACKEND), **tracing}
    mesh["services"]["web"]["sidecar"] = "envoy"
    return mesh, groups, hostvars


# --------------------------------------------------------------------------------------------------------------------
# Model: defaults and errors
# --------------------------------------------------------------------------------------------------------------------


def test_tracing_is_off_by_default(shop: tuple) -> None:
    plan = plan_mesh(*shop)
    assert plan.model.tracing.enabled is False and plan.model.tracing.backend is None
    assert all(service.tracing is None for service in plan.services.values())
    assert plan_document(plan)["mesh"]["tracing"] == {"enabled": False, "sampling": 100.0, "backend": None}


def test_backend_host_resolves_to_its_mesh_address(shop: tuple) -> None:
    plan = plan_mesh(*_traced_shop(shop))
    api = plan.services["api"].tracing
    assert api is not None
    assert (api.backend_address, api.backend_port, api.backend_path) == ("10.0.0.3", 9411, "/api/v2/spans")
    assert (api.sampling, api.service_name) == (10.0, "api")
    assert api.identity == "spiffe://shop.mesh/ns/default/dc/dc1/svc/api"
    assert plan_document(plan)["services"]["api"]["tracing"] == {"sampling": 10.0, "backend": "10.0.0.3:9411"}


def test_service_override_wins_over_the_mesh(shop: tuple) -> None:
    mesh, groups, hostvars = _traced_shop(shop)
    mesh["services"]["api"]["tracing"] = {"sampling": 100}
    mesh["services"]["db"]["tracing"] = {"enabled": False}
    plan = plan_mesh(mesh, groups, hostvars)
    assert plan.services["api"].tracing.sampling == 100.0
    assert plan.services["web"].tracing.sampling == 10.0
    assert plan.services["db"].tracing is None


def test_one_service_can_trace_while_the_mesh_does_not(shop: tuple) -> None:
    mesh, groups, hostvars = shop
    mesh["tracing"] = {"backend": {"address": "192.0.2.7"}}
    mesh["services"]["api"]["tracing"] = {"enabled": True, "sampling": 0.5}
    plan = plan_mesh(mesh, groups, hostvars)
    assert plan.services["web"].tracing is None
    assert plan.services["api"].tracing.backend_address == "192.0.2.7"
    assert plan.services["api"].tracing.sampling == 0.5


def test_enabled_without_a_backend_names_the_key(shop: tuple) -> None:
    mesh, groups, hostvars = shop
    mesh["tracing"] = {"enabled": True}
    error = _only(_errors(mesh, groups, hostvars))
    assert isinstance(error, errors.MissingKeyError)
    assert str(error).startswith(
        "mesh.tracing.backend: mesh.tracing.enabled is true but no trace backend is set"
        " (tracing services: api, db, web)"
    )
    assert "add backend: {host: <inventory host running the trace backend>, port: 9411}" in str(error)


def test_service_enabled_without_a_backend_names_the_service(shop: tuple) -> None:
    mesh, groups, hostvars = shop
    mesh["services"]["db"]["tracing"] = {"enabled": True}
    error = _only(_errors(mesh, groups, hostvars))
    assert "mesh.services.db.tracing.enabled is true but no trace backend is set" in str(error)


@pytest.mark.parametrize(
    ("where", "value"),
    [("mesh", 101), ("mesh", -1), ("mesh", 250.5), ("service", 100.01)],
)
def test_sampling_outside_0_to_100_percent(shop: tuple, where: str, value: float) -> None:
    mesh, groups, hostvars = _traced_shop(shop)
    if where == "mesh":
        mesh["tracing"]["sampling"] = value
        path = "mesh.tracing.sampling"
    else:
        mesh["services"]["api"]["tracing"] = {"sampling": value}
        path = "mesh.services.api.tracing.sampling"
    error = _only(_errors(mesh, groups, hostvars))
    assert isinstance(error, errors.OutOfRangeError)
    assert error.path == path and error.value == value
    assert f"sampling rate {value} % is outside 0-100 %" in str(error)
    assert "write a percentage from 0 (trace nothing) to 100 (trace every request), such as 10" in str(error)


@pytest.mark.parametrize("value", ["10%", True, [10]])
def test_sampling_must_be_a_number(shop: tuple, value: Any) -> None:
    mesh, groups, hostvars = _traced_shop(shop, sampling=value)
    error = _only(_errors(mesh, groups, hostvars))
    assert isinstance(error, errors.InvalidTypeError) and error.path == "mesh.tracing.sampling"
    assert "without a % sign" in str(error)


def test_backend_host_not_in_the_inventory(shop: tuple) -> None:
    mesh, groups, hostvars = _traced_shop(shop, backend={"host": "db2"})
    error = _only(_errors(mesh, groups, hostvars))
    assert isinstance(error, errors.UnknownHostError) and error.path == "mesh.tracing.backend.host"
    assert str(error) == "mesh.tracing.backend.host: 'db2' is not a host of the inventory; did you mean 'db1'?"


def test_backend_host_without_an_address(shop: tuple) -> None:
    mesh, groups, hostvars = _traced_shop(shop)
    hostvars["db1"] = {}
    found = _errors(mesh, groups, hostvars)
    backend = [error for error in found if error.path == "mesh.tracing.backend.host"]
    assert len(backend) == 1 and isinstance(backend[0], errors.MissingAddressError)
    assert "the trace backend's host db1 has no address" in str(backend[0])


@pytest.mark.parametrize(
    ("backend", "path", "problem"),
    [
        ({"address": "zipkin.example"}, "mesh.tracing.backend.address", "'zipkin.example' is not an IP address"),
        ({"port": 9411}, "mesh.tracing.backend", "no host or address is set"),
        ({"host": "db1", "address": "10.0.0.3"}, "mesh.tracing.backend", "set exactly one of host and address"),
        ({"address": "10.0.0.3", "port": 70000}, "mesh.tracing.backend.port", "70000 is out of range"),
        ({"address": "10.0.0.3", "colector": 1}, "mesh.tracing.backend.colector", "unknown key 'colector'"),
    ],
)
def test_bad_backends(shop: tuple, backend: dict, path: str, problem: str) -> None:
    mesh, groups, hostvars = _traced_shop(shop, backend=backend)
    error = _only(_errors(mesh, groups, hostvars))
    assert error.path == path
    assert problem in str(error)


def test_unknown_tracing_keys(shop: tuple) -> None:
    mesh, groups, hostvars = _traced_shop(shop, sample=10)
    mesh["services"]["api"]["tracing"] = {"enable": True}
    found = sorted(str(error) for error in _errors(mesh, groups, hostvars))
    assert len(found) == 2
    assert found[0].startswith("mesh.services.api.tracing.enable: unknown key 'enable'")
    assert "did you mean 'enabled'?" in found[0]
    assert found[1].startswith("mesh.tracing.sample: unknown key 'sample'")


# --------------------------------------------------------------------------------------------------------------------
# Envoy
# --------------------------------------------------------------------------------------------------------------------


def test_envoy_traces_inbound_and_outbound_http(shop: tuple) -> None:
    plan = plan_mesh(*_traced_shop(shop))
    managers = _managers(plan, "web", "web1")
    assert sorted(managers) == ["inbound", "metrics", "upstream.api"]
    for name in ("inbound", "upstream.api"):
        tracing = managers[name]["tracing"]
        assert tracing["random_sampling"] == {"value": 10.0}
        assert tracing["custom_tags"][:2] == [
            {"tag": "mesh.service", "literal": {"value": "web"}},
            {"tag": "mesh.identity", "literal": {"value": "spiffe://shop.mesh/ns/default/dc/dc1/svc/web"}},
        ]
        upstream = [{"tag": "mesh.upstream", "literal": {"value": "api"}}] if name == "upstream.api" else []
        assert tracing["custom_tags"][2:] == upstream
        zipkin = tracing["provider"]["typed_config"]
        assert tracing["provider"]["name"] == "envoy.tracers.zipkin"
        assert zipkin["collector_cluster"] == TRACING_CLUSTER
        assert zipkin["collector_endpoint"] == "/api/v2/spans"
        assert zipkin["collector_endpoint_version"] == "HTTP_JSON"
        assert zipkin["trace_context_option"] == "USE_B3_WITH_W3C_PROPAGATION"
        assert zipkin["shared_span_context"] is False and zipkin["trace_id_128bit"] is True
    assert "tracing" not in managers["metrics"]
    web = _instance(plan, "web", "web1")
    directions = {item["name"]: item.get("traffic_direction") for item in listeners(plan, web)}
    assert directions["inbound"] == "INBOUND" and directions["upstream.api"] == "OUTBOUND"
    backend = next(item for item in clusters(plan, _instance(plan, "web", "web1")) if item["name"] == TRACING_CLUSTER)
    endpoint = backend["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]
    assert endpoint == {"address": "10.0.0.3", "port_value": 9411}


def _inbound_routes(plan: MeshPlan, service: str, host: str) -> list[dict]:
    return _managers(plan, service, host)["inbound"]["route_config"]["virtual_hosts"][0]["routes"]


def test_envoy_does_not_trace_the_callers_health_checks(shop: tuple) -> None:
    mesh, groups, hostvars = _traced_shop(shop)
    mesh["services"]["api"]["health_check"] = {"type": "grpc"}
    plan = plan_mesh(mesh, groups, hostvars)
    for service, host, path in (("web", "web1", "/healthz"), ("api", "api1", "/grpc.health.v1.Health/Check")):
        checks, requests = _inbound_routes(plan, service, host)
        assert checks["name"] == "health_checks"
        user_agent = {"name": "user-agent", "string_match": {"safe_regex": {"regex": "Envoy/HC|HAProxy/HC"}}}
        assert checks["match"] == {"path": path, "headers": [user_agent]}
        assert checks["tracing"] == {"overall_sampling": {"numerator": 0}}
        # to the application as every other request, which keeps the listener's sampling
        assert checks["route"] == requests["route"] and requests["match"] == {"prefix": "/"}
        assert "tracing" not in requests


def test_envoy_without_a_request_health_check_or_tracing_has_one_inbound_route(shop: tuple) -> None:
    plan = plan_mesh(*_traced_shop(shop))  # api has no health check: a TCP connect, which carries no request
    assert [route["match"] for route in _inbound_routes(plan, "api", "api1")] == [{"prefix": "/"}]
    mesh, groups, hostvars = _traced_shop(shop)
    mesh["tracing"]["enabled"] = False
    plan = plan_mesh(mesh, groups, hostvars)
    assert [route["match"] for route in _inbound_routes(plan, "web", "web1")] == [{"prefix": "/"}]


def test_envoy_without_tracing_has_no_tracer_and_no_backend_cluster(shop: tuple) -> None:
    mesh, groups, hostvars = _traced_shop(shop)
    mesh["tracing"]["enabled"] = False
    plan = plan_mesh(mesh, groups, hostvars)
    for host in plan.hosts:
        for path, text in render_envoy_host(plan, host).items():
            assert "tracing" not in text and "zipkin" not in text, path


def test_envoy_tcp_listeners_carry_no_tracer(shop: tuple) -> None:
    plan = plan_mesh(*_traced_shop(shop))
    managers = _managers(plan, "db", "db1")
    assert "inbound" not in managers  # db is TCP: no HTTP connection manager, nothing to trace


def test_envoy_accepts_the_traced_configuration(
    shop: tuple, tmp_path: Path, mesh_pki, validate_envoy, file_writer
) -> None:
    mesh, groups, hostvars = _traced_shop(shop)
    mesh["services"]["api"]["health_check"] = {"type": "grpc"}  # its inbound has the untraced health-check route
    for service in mesh["services"]:
        mesh_pki.issue(service)
    paths = {kind: str(tmp_path / kind) for kind in ("envoy", "haproxy", "consul", "prometheus")}
    mesh["paths"] = {**paths, "certs": str(mesh_pki.root)}
    plan = plan_mesh(mesh, groups, hostvars)
    checked = 0
    for host in plan.hosts:
        files = render_envoy_host(plan, host)
        file_writer(files)
        for instance in plan.hosts[host].instances:
            validate_envoy(files, f"{tmp_path}/envoy/{instance.service}")
            checked += 1
    assert checked == 5


# --------------------------------------------------------------------------------------------------------------------
# HAProxy
# --------------------------------------------------------------------------------------------------------------------


def _haproxy_plan(shop: tuple, enabled: bool) -> MeshPlan:
    mesh, groups, hostvars = shop
    mesh["tracing"] = {"enabled": enabled, "backend": dict(_BACKEND)}
    return plan_mesh(mesh, groups, hostvars)


def test_haproxy_adds_a_request_id_when_tracing(shop: tuple) -> None:
    config = next(iter(render_haproxy_host(_haproxy_plan(shop, True), "web1").values()))
    # inbound and the HTTP outbound frontends; the TCP one (db) has none
    rule = "http-request set-header x-request-id %[unique-id] unless { req.hdr(x-request-id) -m found }"
    assert config.count(rule) == 2
    assert config.count("unique-id-format ") == 2
    for header in ("traceparent", "tracestate", "b3", "x-b3-traceid"):
        assert header not in config  # passed through, never rewritten


def test_haproxy_without_tracing_adds_nothing(shop: tuple) -> None:
    config = next(iter(render_haproxy_host(_haproxy_plan(shop, False), "web1").values()))
    assert "unique-id" not in config and "x-request-id" not in config


def test_haproxy_accepts_the_traced_configuration(
    shop: tuple, tmp_path: Path, mesh_pki, validate_haproxy: Callable[[str], None]
) -> None:
    mesh, groups, hostvars = shop
    for service in mesh["services"]:
        mesh_pki.issue(service)
    mesh.update(paths={"certs": str(mesh_pki.root), "haproxy": str(tmp_path)})
    mesh["tracing"] = {"enabled": True, "backend": dict(_BACKEND)}
    plan = plan_mesh(mesh, groups, hostvars)
    validate_haproxy(next(iter(render_haproxy_host(plan, "web1").values())))
