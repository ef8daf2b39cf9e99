"""Property-based tests: random valid meshes always plan and render configs the real validators accept; random
corruptions always raise the typed validation error, never anything else."""

from __future__ import annotations

import copy
import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from ansible_collections.vmmesh.mesh.plugins.module_utils.mesh_compiler import render_bundle, render_host
from ansible_collections.vmmesh.mesh.plugins.module_utils.mesh_errors import MeshError, MeshValidationError
from ansible_collections.vmmesh.mesh.plugins.module_utils.mesh_planner import host_listeners, plan_mesh
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

SERVICE_NAMES = ("api", "auth", "cart", "db", "pay", "web")
HOSTS = ("h1", "h2", "h3", "h4")
PROTOCOLS = ("http", "http2", "grpc", "tcp")
DURATIONS = ("250ms", "1s", "2s", "5s", "1m")


def _inventory(hosts: tuple[str, ...]) -> tuple[dict, dict]:
    groups = {"all": list(hosts), "ungrouped": []}
    hostvars = {host: {"ansible_host": f"10.0.0.{index + 1}"} for index, host in enumerate(hosts)}
    return groups, hostvars


@st.composite
def _policy(draw: st.DrawFn, protocol: str, source_sidecar: str) -> dict[str, Any]:
    policy: dict[str, Any] = {}
    if draw(st.booleans()):
        policy["connect_timeout"] = draw(st.sampled_from(DURATIONS))
    if protocol != "tcp" and draw(st.booleans()):
        policy["request_timeout"] = draw(st.sampled_from(DURATIONS))
    if draw(st.booleans()):
        conditions = ["connect-failure"] if protocol == "tcp" else ["connect-failure", "5xx", "reset", "gateway-error"]
        if protocol == "grpc" and source_sidecar == "envoy":
            conditions += ["unavailable", "cancelled", "deadline-exceeded", "resource-exhausted"]
        retries: dict[str, Any] = {
            "attempts": draw(st.integers(0, 5)),
            "retry_on": draw(st.lists(st.sampled_from(conditions), max_size=3, unique=True)),
        }
        if protocol != "tcp" and draw(st.booleans()):
            retries["per_try_timeout"] = draw(st.sampled_from(DURATIONS))
        policy["retries"] = retries
    if draw(st.booleans()):
        policy["circuit_breaker"] = {
            "max_connections": draw(st.integers(1, 5000)),
            "max_retries": draw(st.integers(0, 9)),
        }
    if draw(st.booleans()):
        policy["outlier_detection"] = {
            "enabled": draw(st.booleans()),
            "consecutive_5xx": draw(st.integers(1, 20)),
            "max_ejection_percent": draw(st.integers(0, 100)),
        }
    return policy


@st.composite
def valid_meshes(draw: st.DrawFn) -> tuple[dict, dict, dict]:
    hosts = HOSTS[: draw(st.integers(1, len(HOSTS)))]
    groups, hostvars = _inventory(hosts)
    names = draw(st.lists(st.sampled_from(SERVICE_NAMES), min_size=1, max_size=5, unique=True))
    services: dict[str, dict[str, Any]] = {}
    for index, name in enumerate(names):
        protocol = draw(st.sampled_from(PROTOCOLS))
        members = draw(st.lists(st.sampled_from(hosts), min_size=1, max_size=len(hosts), unique=True))
        if draw(st.booleans()):
            groups[f"g_{name}"] = members
            where: Any = f"g_{name}"
        else:
            where = members
        service: dict[str, Any] = {
            "port": 8000 + index,
            "protocol": protocol,
            "hosts": where,
            "sidecar": draw(st.sampled_from(("envoy", "haproxy"))),
        }
        if draw(st.booleans()):
            check_types = ["tcp"] if protocol == "tcp" else ["tcp", "http"] + (["grpc"] if protocol == "grpc" else [])
            kind = draw(st.sampled_from(check_types))
            service["health_check"] = {"type": kind, **({"path": "/healthz"} if kind == "http" else {})}
        if protocol != "tcp" and draw(st.booleans()):
            service["rate_limit"] = {"requests_per_second": draw(st.integers(1, 1000))}
        if protocol != "tcp" and len(members) >= 2 and draw(st.booleans()):
            cut = draw(st.integers(1, len(members) - 1))
            service["subsets"] = {"v1": {"hosts": sorted(members)[:cut]}, "v2": {"hosts": sorted(members)[cut:]}}
        services[name] = service
    local_port = 9000
    for service in services.values():
        upstreams = []
        for target in draw(st.lists(st.sampled_from(names), max_size=3, unique=True)):
            destination = services[target]
            upstream: dict[str, Any] = {"service": target, "local_port": local_port}
            local_port += 1
            upstream.update(draw(_policy(destination["protocol"], service["sidecar"])))
            if "subsets" in destination and draw(st.booleans()):
                weight = draw(st.integers(0, 100))
                upstream["split"] = [{"subset": "v1", "weight": weight}, {"subset": "v2", "weight": 100 - weight}]
            upstreams.append(upstream)
        service["upstreams"] = upstreams
    choices = [*names, "*"]
    intentions = []
    seen = set()
    for _corruption in range(draw(st.integers(0, 6))):
        pair = (draw(st.sampled_from(choices)), draw(st.sampled_from(choices)))
        if pair in seen:
            continue
        seen.add(pair)
        intentions.append(
            {"source": pair[0], "destination": pair[1], "action": draw(st.sampled_from(("allow", "deny")))}
        )
    mesh = {
        "name": "prop",
        "discovery": draw(st.sampled_from(("consul", "static"))),
        "default_policy": draw(st.sampled_from(("allow", "deny"))),
        "denied_upstream": "warning",
        "metrics": {"expose": draw(st.booleans())},
        "services": services,
        "intentions": intentions,
    }
    return mesh, groups, hostvars


@settings(max_examples=60, deadline=None)
@given(valid_meshes())
def test_random_valid_meshes_always_plan(case: tuple[dict, dict, dict]) -> None:
    mesh, groups, hostvars = case
    plan = plan_mesh(copy.deepcopy(mesh), groups, hostvars)
    for name, service in plan.services.items():
        assert {instance.inbound_port for instance in service.instances} == {service.inbound_port}
        assert service.identity.endswith(f"/svc/{name}")
    for host in plan.hosts:
        ports = [listener.port for listener in host_listeners(plan, host)]
        assert len(ports) == len(set(ports)), f"two listeners share a port on {host}"
    assert {(edge.source, edge.destination) for edge in plan.edges} == {
        (name, upstream.service)
        for name, service in plan.services.items()
        for upstream in service.upstreams
        if upstream.allowed
    }
    bundle = render_bundle(plan)
    assert render_bundle(plan_mesh(copy.deepcopy(mesh), groups, hostvars)) == bundle
    json.loads(bundle["plan.json"])


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=valid_meshes())
def test_random_valid_meshes_render_configs_the_validators_accept(
    case: tuple[dict, dict, dict],
    mesh_pki,
    tmp_path_factory: pytest.TempPathFactory,
    validate_envoy: Callable,
    validate_haproxy: Callable,
    file_writer: Callable,
) -> None:
    mesh, groups, hostvars = case
    for name in mesh["services"]:
        mesh_pki.issue(name, trust_domain="prop.mesh")
    root = Path(tempfile.mkdtemp(dir=tmp_path_factory.getbasetemp()))
    mesh["paths"] = {"certs": str(mesh_pki.root), "envoy": str(root / "envoy"), "haproxy": str(root / "haproxy")}
    plan = plan_mesh(mesh, groups, hostvars)
    validated: set[str] = set()
    for host in plan.hosts:
        files = render_host(plan, host, ["envoy", "haproxy"])
        file_writer(files)
        for instance in plan.hosts[host].instances:
            # Envoy takes ~0.2 s per config: check each service's sidecar once per example
            if instance.sidecar == "envoy" and instance.service not in validated:
                validate_envoy(files, f"{root}/envoy/{instance.service}")
                validated.add(instance.service)
        haproxy = files.get(f"{root}/haproxy/haproxy.cfg")
        if haproxy is not None:
            validate_haproxy(haproxy)


# --------------------------------------------------------------------------------------------------------------------
# Corruptions
# --------------------------------------------------------------------------------------------------------------------

_GARBAGE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 100000),
    st.text(max_size=8),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
)


def _paths_of(node: Any, prefix: tuple = ()) -> list[tuple]:
    paths = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, value in node.items():
            paths.extend(_paths_of(value, (*prefix, key)))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            paths.extend(_paths_of(value, (*prefix, index)))
    return paths


def _replace(node: Any, path: tuple, value: Any) -> None:
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value


@settings(max_examples=150, deadline=None)
@given(valid_meshes(), st.data())
def test_random_corruptions_raise_the_typed_error_never_a_traceback(case: tuple, data: st.DataObject) -> None:
    mesh, groups, hostvars = case
    path = data.draw(st.sampled_from(_paths_of(mesh)))
    garbage = data.draw(_GARBAGE)
    _replace(mesh, path, garbage)
    try:
        plan_mesh(mesh, groups, hostvars)
    except MeshValidationError as error:
        assert error.errors
        assert all(isinstance(item, MeshError) and item.message.startswith("mesh") for item in error.errors)


_TARGETED = {
    "unknown upstream": lambda mesh: (
        mesh["services"][next(iter(mesh["services"]))]
        .setdefault("upstreams", [])
        .append({"service": "nosuch", "local_port": 9999})
    ),
    "missing port": lambda mesh: mesh["services"][next(iter(mesh["services"]))].pop("port"),
    "bad duration": lambda mesh: mesh.update(defaults={"connect_timeout": "soon"}),
    "bad protocol": lambda mesh: mesh["services"][next(iter(mesh["services"]))].update(protocol="udp"),
    "unknown group": lambda mesh: mesh["services"][next(iter(mesh["services"]))].update(hosts="nogroup"),
    "unknown key": lambda mesh: mesh.update(nmae="x"),
    "bad intention": lambda mesh: mesh["intentions"].append(
        {"source": "nosuch", "destination": "*", "action": "allow"}
    ),
    "port out of range": lambda mesh: mesh["services"][next(iter(mesh["services"]))].update(port=0),
    "app port on a local port": lambda mesh: mesh["services"][next(iter(mesh["services"]))].update(port=9000),
}


@settings(max_examples=80, deadline=None)
@given(valid_meshes(), st.sampled_from(sorted(_TARGETED)))
def test_targeted_corruptions_are_always_reported(case: tuple, corruption: str) -> None:
    mesh, groups, hostvars = case
    if corruption == "app port on a local port":
        first = next(iter(mesh["services"].values()))
        assume(any(upstream["local_port"] == 9000 for upstream in first["upstreams"]))
    _TARGETED[corruption](mesh)
    with pytest.raises(MeshValidationError) as caught:
        plan_mesh(mesh, groups, hostvars)
    assert caught.value.errors


_JSONISH = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=6)),
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.dictionaries(
            st.sampled_from(["name", "services", "hosts", "port", "upstreams", "service", "intentions", "x"]),
            children,
            max_size=4,
        ),
    ),
    max_leaves=20,
)


@settings(max_examples=150, deadline=None)
@given(_JSONISH)
def test_arbitrary_input_never_crashes(mesh: Any) -> None:
    groups, hostvars = _inventory(HOSTS)
    try:
        plan_mesh(mesh, groups, hostvars)
    except MeshValidationError as error:
        assert error.errors
