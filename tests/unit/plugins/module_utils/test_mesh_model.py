"""The model: defaults, and one test per error class with the exact message users read."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from ansible_collections.vmmesh.mesh.plugins.module_utils import mesh_errors as errors
from ansible_collections.vmmesh.mesh.plugins.module_utils.mesh_errors import ErrorCollector, MeshValidationError
from ansible_collections.vmmesh.mesh.plugins.module_utils.mesh_model import (
    PortRange,
    format_duration,
    parse_duration_ms,
    parse_mesh,
)
from ansible_collections.vmmesh.mesh.plugins.module_utils.mesh_planner import plan_mesh


def _errors(mesh: Any, groups: dict, hostvars: dict) -> list[errors.MeshError]:
    with pytest.raises(MeshValidationError) as caught:
        plan_mesh(mesh, groups, hostvars)
    return caught.value.errors


# --------------------------------------------------------------------------------------------------------------------
# Defaults
# --------------------------------------------------------------------------------------------------------------------


def test_defaults_fill_every_optional_key(shop: tuple) -> None:
    mesh, groups, hostvars = shop
    collector = ErrorCollector()
    model = parse_mesh(mesh, groups, hostvars, collector)
    assert collector.errors == []
    assert model is not None
    assert (model.trust_domain, model.datacenter, model.discovery) == ("shop.mesh", "dc1", "consul")
    assert (model.default_sidecar, model.default_policy, model.denied_upstream) == ("envoy", "deny", "error")
    assert model.ports.inbound == PortRange(21000, 24999)
    assert model.ports.admin == PortRange(19000, 19999)
    assert model.ports.metrics == PortRange(20000, 20999)
    assert not model.metrics.expose and model.metrics.path == "/metrics"
    assert (model.consul.domain, model.consul.dns_address, model.consul.dns_port) == ("consul", "127.0.0.1", 8600)
    assert model.paths.certs == "/etc/vmmesh/certs" and model.paths.envoy == "/etc/envoy"
    api = model.services["api"]
    assert api.sidecar == "envoy" and api.app_address == "127.0.0.1" and api.inbound_port is None
    assert api.health_check.type == "tcp" and api.health_check.interval_ms == 10000
    policy = api.upstreams[0].policy
    assert policy.connect_timeout_ms == 5000 and policy.request_timeout_ms == 15000
    assert policy.retries.attempts == 2 and policy.retries.retry_on == ("connect-failure",)
    assert policy.circuit_breaker.max_connections == 1024
    assert policy.outlier_detection.enabled and policy.outlier_detection.consecutive_5xx == 5
    assert model.services["web"].health_check.path == "/healthz"
    assert model.services["web"].health_check.type == "http"


def test_default_retries_cover_connection_failures_and_resets(shop: tuple) -> None:
    """A request reset before any byte of answer (an HAProxy reload closing a keep-alive connection) is retried."""
    mesh, groups, hostvars = shop
    mesh["services"]["api"].pop("retries", None)
    model = parse_mesh(mesh, groups, hostvars, ErrorCollector())
    assert model is not None
    web_api = model.services["web"].upstreams[0].policy
    assert web_api.retries.attempts == 2 and web_api.retries.retry_on == ("connect-failure", "reset")
    # reset is L7: a tcp upstream keeps connect-failure only
    assert model.services["web"].upstreams[1].policy.retries.retry_on == ("connect-failure",)


def test_policies_merge_upstream_over_destination_over_mesh_defaults(shop: tuple) -> None:
    mesh, groups, hostvars = shop
    mesh["defaults"] = {"connect_timeout": "2s", "circuit_breaker": {"max_connections": 10}}
    mesh["services"]["api"]["request_timeout"] = "30s"
    mesh["services"]["api"]["retries"] = {"attempts": 4, "retry_on": ["5xx", "unavailable"]}
    mesh["services"]["web"]["upstreams"][0]["retries"] = {"attempts": 1}
    mesh["services"]["web"]["upstreams"][0]["circuit_breaker"] = {"max_requests": 7}
    model = parse_mesh(mesh, groups, hostvars, ErrorCollector())
    assert model is not None
    web_api = model.services["web"].upstreams[0].policy
    assert web_api.connect_timeout_ms == 2000
    assert web_api.request_timeout_ms == 30000
    assert web_api.retries.attempts == 1
    # the haproxy sidecar of web cannot retry on gRPC status codes: the inherited one is dropped
    assert web_api.retries.retry_on == ("5xx",)
    assert (web_api.circuit_breaker.max_connections, web_api.circuit_breaker.max_requests) == (10, 7)
    # a tcp upstream keeps only the L4 part of inherited policies
    api_db = model.services["api"].upstreams[0].policy
    assert api_db.retries.retry_on == ("connect-failure",)


@pytest.mark.parametrize(
    ("text", "millis"),
    [("250ms", 250), ("5s", 5000), ("1m30s", 90000), ("1h", 3600000), ("1.5s", 1500), ("0.25s", 250)],
)
def test_durations(text: str, millis: int) -> None:
    assert parse_duration_ms(text) == millis


@pytest.mark.parametrize("text", ["5", "5 s", "s", "1.0001s", "-1s", "", None, 5, "1d"])
def test_not_durations(text: Any) -> None:
    assert parse_duration_ms(text) is None


def test_format_duration() -> None:
    assert [format_duration(value) for value in (250, 1000, 90000, 3600000)] == ["250ms", "1s", "90s", "1h"]


def test_host_address_resolution_order(shop: tuple) -> None:
    mesh, groups, hostvars = shop
    hostvars["web1"] = {"mesh_address": "10.1.1.1", "ansible_host": "10.2.2.2"}
    hostvars["web2"] = {"ansible_host": "web2.example", "ansible_facts": {"default_ipv4": {"address": "10.3.3.3"}}}
    hostvars["api1"] = {"ansible_host": "api1.example", "ansible_default_ipv4": {"address": "10.4.4.4"}}
    hostvars["api2"] = {"ansible_host": "fd00::2"}
    model = parse_mesh(mesh, groups, hostvars, ErrorCollector())
    assert model is not None
    assert model.host_addresses["web1"] == "10.1.1.1"
    assert model.host_addresses["web2"] == "10.3.3.3"
    assert model.host_addresses["api1"] == "10.4.4.4"
    assert model.host_addresses["api2"] == "fd00::2"


def test_hosts_as_a_list_and_int_like_strings(shop: tuple) -> None:
    mesh, groups, hostvars = shop
    mesh["services"]["web"]["hosts"] = ["web2", "web1"]
    mesh["services"]["web"]["port"] = "8080"
    model = parse_mesh(mesh, groups, hostvars, ErrorCollector())
    assert model is not None
    assert model.services["web"].hosts == ("web1", "web2")
    assert model.services["web"].port == 8080


# --------------------------------------------------------------------------------------------------------------------
# One test per error class, asserting the exact message
# --------------------------------------------------------------------------------------------------------------------

Mutation = Callable[[dict, dict, dict], None]


def _set(path: str, value: Any) -> Mutation:
    """Set ``value`` at a dotted path of the mesh (integers index lists)."""

    def mutate(mesh: dict, groups: dict, hostvars: dict) -> None:
        *parents, last = path.split(".")
        node: Any = mesh
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        if isinstance(node, list) and int(last) == len(node):
            node.append(value)
        elif isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value

    return mutate


def _delete(path: str) -> Mutation:
    def mutate(mesh: dict, groups: dict, hostvars: dict) -> None:
        *parents, last = path.split(".")
        node: Any = mesh
        for part in parents:
            node = node[part]
        del node[last]

    return mutate


def _empty_group(mesh: dict, groups: dict, hostvars: dict) -> None:
    groups["web"] = []


def _no_address(mesh: dict, groups: dict, hostvars: dict) -> None:
    hostvars["db1"] = {"ansible_host": "db1.example"}


def _bad_mesh_address(mesh: dict, groups: dict, hostvars: dict) -> None:
    hostvars["db1"] = {"mesh_address": "db1.example"}


def _deny_web_to_api(mesh: dict, groups: dict, hostvars: dict) -> None:
    mesh["intentions"] = mesh["intentions"][1:]


def _tiny_inbound_range(mesh: dict, groups: dict, hostvars: dict) -> None:
    mesh["ports"] = {"inbound": {"start": 30000, "end": 30000}}
    mesh["services"]["db"]["hosts"] = ["db1", "api1"]


CASES: list[tuple[type[errors.MeshError], Mutation, str]] = [
    (
        errors.MissingKeyError,
        _delete("name"),
        "mesh.name: missing required key 'name'; add name: <lowercase DNS label>, for example name: shop",
    ),
    (
        errors.UnknownKeyError,
        _set("services.web.protcol", "http"),
        "mesh.services.web.protcol: unknown key 'protcol'; did you mean 'protocol'?",
    ),
    (
        errors.InvalidTypeError,
        _set("services.web.port", "eighty"),
        "mesh.services.web.port: expected an integer, got 'eighty'; write a whole number from 1 to 65535",
    ),
    (
        errors.InvalidValueError,
        _set("services.web.protocol", "htp"),
        "mesh.services.web.protocol: invalid value 'htp'; did you mean 'http'?",
    ),
    (
        errors.OutOfRangeError,
        _set("services.web.port", 70000),
        "mesh.services.web.port: 70000 is out of range; use a number from 1 to 65535",
    ),
    (
        errors.InvalidDurationError,
        _set("services.web.upstreams.1.connect_timeout", "5 sec"),
        "mesh.services.web.upstreams[1].connect_timeout: invalid duration '5 sec'; "
        "write a duration such as '250ms', '5s', '1m30s' or '1h'",
    ),
    (
        errors.UnknownServiceError,
        _set("services.web.upstreams.0.service", "apii"),
        "mesh.services.web.upstreams[0].service: unknown service 'apii'; did you mean 'api'?",
    ),
    (
        errors.UnknownGroupError,
        _set("services.web.hosts", "wbe"),
        "mesh.services.web.hosts: unknown inventory group 'wbe'; did you mean 'web'?",
    ),
    (
        errors.UnknownHostError,
        _set("services.db.hosts", ["db2"]),
        "mesh.services.db.hosts[0]: unknown host 'db2'; did you mean 'db1'?",
    ),
    (
        errors.EmptyGroupError,
        _empty_group,
        "mesh.services.web.hosts: inventory group 'web' has no hosts; "
        "add hosts to the group or point hosts at another group",
    ),
    (
        errors.MissingAddressError,
        _no_address,
        "mesh.services.db.hosts: host 'db1' has no usable mesh address: it has no mesh_address, no ansible_host that "
        "is an IP address and no default IPv4 fact; set the host variable mesh_address to the host's IP address on "
        "the mesh network",
    ),
    (
        errors.DuplicateError,
        _set("services.web.upstreams.1.service", "api"),
        "mesh.services.web.upstreams[1].service: upstream 'api' is already declared at "
        "mesh.services.web.upstreams[0]; declare each upstream once",
    ),
    (
        errors.PortCollisionError,
        _set("services.web.upstreams.1.local_port", 8080),
        "mesh.services.web.upstreams[1].local_port: port 8080 on hosts 'web1', 'web2' is already used by "
        "mesh.services.web.port (application port of web); choose a port that is free on every host of the service",
    ),
    (
        errors.PortRangeExhaustedError,
        _tiny_inbound_range,
        "mesh.services.db.inbound_port: no port of range 30000-30000 is free on api1, db1 for the inbound port of "
        "db; widen the range or spread the services over more hosts",
    ),
    (
        errors.L7PolicyOnTcpError,
        _set("services.db.request_timeout", "5s"),
        "mesh.services.db.request_timeout: L7 policy on tcp service 'db'; "
        "remove it, or set protocol: http, http2 or grpc on mesh.services.db",
    ),
    (
        errors.SplitWeightError,
        _set("services.web.upstreams.0.split.1.weight", 5),
        "mesh.services.web.upstreams[0].split: split weights sum to 95, not 100; "
        "adjust the weights so that they add up to 100",
    ),
    (
        errors.UnknownSubsetError,
        _set("services.web.upstreams.0.split.1.subset", "v3"),
        "mesh.services.web.upstreams[0].split[1].subset: unknown subset 'v3' of service 'api'; use a subset of api "
        "(v1, v2) or declare it under mesh.services.api.subsets",
    ),
    (
        errors.DeniedUpstreamError,
        _deny_web_to_api,
        "mesh.services.web.upstreams[0].service: the intentions deny web -> api; add the intention "
        "{source: web, destination: api, action: allow} or remove the upstream (or set mesh.denied_upstream: warning "
        "to deploy it anyway, refused by the destination)",
    ),
    (
        errors.UnsupportedBySidecarError,
        _set("services.web.upstreams.0.retries", {"retry_on": ["unavailable"]}),
        "mesh.services.web.upstreams[0].retries.retry_on: retry condition 'unavailable' is not supported by the "
        "haproxy sidecar of 'web'; remove it, or set sidecar: envoy on mesh.services.web",
    ),
]


@pytest.mark.parametrize(("error_class", "mutate", "message"), CASES, ids=[case[0].__name__ for case in CASES])
def test_each_error_class_names_path_value_and_fix(
    shop: tuple, error_class: type[errors.MeshError], mutate: Mutation, message: str
) -> None:
    mesh, groups, hostvars = shop
    mutate(mesh, groups, hostvars)
    found = _errors(mesh, groups, hostvars)
    assert [type(error) for error in found] == [error_class], [error.message for error in found]
    assert found[0].message == message
    assert str(found[0]) == message
    assert found[0].path == message.split(":")[0]


def test_every_error_class_has_a_case() -> None:
    classes = {
        value
        for value in vars(errors).values()
        if isinstance(value, type) and issubclass(value, errors.MeshError) and value is not errors.MeshError
    }
    assert classes == {case[0] for case in CASES}


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (
            _set("services.web.upstreams.0.split", []),
            "mesh.services.web.upstreams[0].split: expected a non-empty list of {subset, weight}, got []; "
            "write split: [{subset: v1, weight: 90}, ...]",
        ),
        (
            _set("services.db.rate_limit", {"requests_per_second": 5}),
            "mesh.services.db.rate_limit: L7 policy on tcp service 'db'; "
            "remove it, or set protocol: http, http2 or grpc on mesh.services.db",
        ),
        (
            _set("services.web.upstreams.1.split", [{"subset": "v1", "weight": 100}]),
            "mesh.services.web.upstreams[1].split: L7 policy on tcp service 'db'; "
            "remove it, or set protocol: http, http2 or grpc on mesh.services.db",
        ),
        (
            _set("intentions.2", {"source": "web", "destination": "db", "action": "allow", "paths": ["/x"]}),
            "mesh.intentions[2].paths: L7 policy on tcp service 'db'; "
            "remove it, or set protocol: http, http2 or grpc on mesh.services.db",
        ),
        (
            _set("services.db.health_check", {"type": "http", "path": "/"}),
            "mesh.services.db.health_check.type: L7 policy on tcp service 'db'; "
            "remove it, or set protocol: http, http2 or grpc on mesh.services.db",
        ),
        (
            _set("services.api.upstreams.0.retries", {"retry_on": ["5xx"]}),
            "mesh.services.api.upstreams[0].retries.retry_on: L7 policy on tcp service 'db'; "
            "remove it, or set protocol: http, http2 or grpc on mesh.services.db",
        ),
    ],
)
def test_l7_policies_on_tcp_services(shop: tuple, mutate: Mutation, message: str) -> None:
    mesh, groups, hostvars = shop
    mutate(mesh, groups, hostvars)
    assert [error.message for error in _errors(mesh, groups, hostvars)] == [message]


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (
            _set("services.web.upstreams.0.retries", {"on": ["5xx"]}),
            "mesh.services.web.upstreams[0].retries.on: unknown key 'on'; did you mean 'retry_on'?",
        ),
        (
            _set("services.web.upstreams.0.retries", {True: ["5xx"]}),
            "mesh.services.web.upstreams[0].retries.True: unknown key True; YAML reads an unquoted on, off, yes or no "
            "as a boolean; did you mean 'retry_on'?",
        ),
        (
            _set("services.web.hosts", "web1"),
            "mesh.services.web.hosts: unknown inventory group 'web1'; 'web1' is a host, not a group; "
            "write hosts: [web1]",
        ),
        (
            _bad_mesh_address,
            "mesh.services.db.hosts: host 'db1' has no usable mesh address: its mesh_address 'db1.example' is not an "
            "IP address; set the host variable mesh_address to the host's IP address on the mesh network",
        ),
        (
            _set("intentions.0.destination", "apii"),
            "mesh.intentions[0].destination: unknown service 'apii'; did you mean 'api'?",
        ),
        (
            _set("intentions.1", {"source": "web", "destination": "api", "action": "allow"}),
            "mesh.intentions[1]: intention web -> api is already declared at mesh.intentions[0]; "
            "keep one intention per pair",
        ),
        (
            _set("intentions.0.action", "permit"),
            "mesh.intentions[0].action: invalid value 'permit'; use one of: deny, allow",
        ),
        (
            _set("services.Web", {"port": 1, "hosts": "web"}),
            "mesh.services.Web: invalid service name 'Web'; "
            "use a lowercase DNS label: letters, digits and '-', starting with a letter, at most 63 characters",
        ),
        (
            _set("ports", {"admin": {"start": 20500, "end": 20999}}),
            "mesh.ports.admin: port range 20500-20999 overlaps mesh.ports.metrics (20000-20999); "
            "give each kind of port its own range",
        ),
        (
            _set("services.api.subsets.v2.hosts", ["web1"]),
            "mesh.services.api.subsets.v2.hosts: host 'web1' is not an instance of this service; "
            "add it to mesh.services.api.hosts or remove it from the subset",
        ),
        (
            _set("services.api.upstreams.0.service", None),
            "mesh.services.api.upstreams[0].service: missing required key 'service'; "
            "add service: <name of the service to call>",
        ),
        (
            _set("services.web.health_check", {"path": "/", "interval": "1s", "timeout": "2s"}),
            "mesh.services.web.health_check.timeout: timeout 2s is longer than interval 1s; "
            "make the timeout shorter than the interval",
        ),
        (
            _set("services.web.rate_limit", {"requests_per_second": 10, "burst": 5}),
            "mesh.services.web.rate_limit.burst: burst 5 is below requests_per_second 10; "
            "set burst to at least 10 or leave it out",
        ),
    ],
)
def test_more_messages(shop: tuple, mutate: Mutation, message: str) -> None:
    mesh, groups, hostvars = shop
    mutate(mesh, groups, hostvars)
    assert [error.message for error in _errors(mesh, groups, hostvars)] == [message]


def test_all_errors_are_reported_together(shop: tuple) -> None:
    mesh, groups, hostvars = shop
    mesh["services"]["web"]["upstreams"][0]["service"] = "apii"
    mesh["services"]["web"]["port"] = "x"
    mesh["services"]["db"]["protocol"] = "udp"
    mesh["intentions"].append({"source": "nobody", "destination": "db", "action": "allow"})
    mesh["default_policy"] = "maybe"
    with pytest.raises(MeshValidationError) as caught:
        plan_mesh(mesh, groups, hostvars)
    paths = [error.path for error in caught.value.errors]
    assert paths == [
        "mesh.services.db.protocol",
        "mesh.services.web.port",
        "mesh.services.web.upstreams[0].service",
        "mesh.intentions[2].source",
        "mesh.default_policy",
    ]
    text = str(caught.value)
    assert text.startswith("the mesh model has 5 errors:\n  - mesh.services.db.protocol: ")
    assert all(f"  - {error.message}" in text for error in caught.value.errors)


@pytest.mark.parametrize("mesh", [None, [], "shop", 3])
def test_a_mesh_that_is_not_a_mapping(mesh: Any) -> None:
    with pytest.raises(MeshValidationError) as caught:
        plan_mesh(mesh, {}, {})
    assert caught.value.errors[0].path == "mesh"
    assert caught.value.errors[0].message.startswith("mesh: expected the mesh variable to be a mapping")
