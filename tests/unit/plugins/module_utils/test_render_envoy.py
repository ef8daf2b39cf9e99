"""Envoy configuration: structure of every branch, and acceptance by the real Envoy."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from ansible_collections.vmmesh.mesh.plugins.module_utils.mesh_planner import MeshPlan, plan_mesh
from ansible_collections.vmmesh.mesh.plugins.module_utils.render_envoy import (
    EnvoyRenderer,
    bootstrap,
    clusters,
    duration,
    keep_current_clusters,
    listeners,
    render_envoy_host,
    render_envoy_instance,
)
from ansible_collections.vmmesh.mesh.plugins.module_utils.render_yaml import to_yaml


def _paths(root: Path, certs: Path) -> dict[str, str]:
    paths = {kind: str(root / kind) for kind in ("envoy", "haproxy", "consul", "prometheus")}
    paths["certs"] = str(certs)
    return paths


def _instance(plan: MeshPlan, service: str, host: str):
    return next(item for item in plan.services[service].instances if item.host == host)


def _listener(plan: MeshPlan, service: str, host: str, name: str) -> dict:
    return next(item for item in listeners(plan, _instance(plan, service, host)) if item["name"] == name)


def _cluster(plan: MeshPlan, service: str, host: str, name: str) -> dict:
    return next(item for item in clusters(plan, _instance(plan, service, host)) if item["name"] == name)


def _filter(chain: dict, name: str) -> dict:
    return next(item for item in chain["filters"] if item["name"] == name)["typed_config"]


def _http_filters(listener: dict) -> list[str]:
    manager = _filter(listener["filter_chains"][0], "envoy.filters.network.http_connection_manager")
    return [item["name"] for item in manager["http_filters"]]


def test_duration() -> None:
    assert [duration(value) for value in (1000, 250, 2500, 90000)] == ["1s", "0.250s", "2.500s", "90s"]


def test_files_of_an_instance(shop: tuple) -> None:
    plan = plan_mesh(*shop)
    files = render_envoy_instance(plan, _instance(plan, "api", "api1"))
    assert sorted(files) == [
        "/etc/envoy/api/cds.yaml",
        "/etc/envoy/api/envoy.yaml",
        "/etc/envoy/api/lds.yaml",
        "/etc/envoy/api/sds/tls_cert.yaml",
        "/etc/envoy/api/sds/trust_bundle.yaml",
    ]
    assert all(text.startswith("# ") for text in files.values())
    assert render_envoy_host(plan, "web1") == {}  # web uses haproxy


def test_assembled_files_equal_the_plain_rendering(shop: tuple) -> None:
    """The renderer splices cached fragments; the result must be what emitting the whole structure gives."""
    plan = plan_mesh(*shop)
    instance = _instance(plan, "api", "api2")
    files = EnvoyRenderer(plan).instance_files(instance)
    assert yaml.safe_load(files["/etc/envoy/api/lds.yaml"]) == {"resources": listeners(plan, instance)}
    assert yaml.safe_load(files["/etc/envoy/api/cds.yaml"]) == {"resources": clusters(plan, instance)}
    body = files["/etc/envoy/api/lds.yaml"].split("\n", 1)[1]
    assert body == to_yaml({"resources": listeners(plan, instance)})


def test_bootstrap(shop: tuple) -> None:
    plan = plan_mesh(*shop)
    instance = _instance(plan, "api", "api1")
    config = bootstrap(plan, instance)
    assert config["admin"]["address"]["socket_address"] == {"address": "127.0.0.1", "port_value": instance.admin_port}
    assert config["node"]["id"] == "api1/api"
    lds = config["dynamic_resources"]["lds_config"]["path_config_source"]
    assert lds == {"path": "/etc/envoy/api/lds.yaml", "watched_directory": {"path": "/etc/envoy/api"}}
    resolver = config["typed_dns_resolver_config"]["typed_config"]["resolvers"][0]["socket_address"]
    assert resolver == {"address": "127.0.0.1", "port_value": 8600}


def test_static_discovery_has_no_dns_resolver_and_static_endpoints(shop: tuple) -> None:
    mesh, groups, hostvars = shop
    mesh["discovery"] = "static"
    plan = plan_mesh(mesh, groups, hostvars)
    assert "typed_dns_resolver_config" not in bootstrap(plan, _instance(plan, "api", "api1"))
    cluster = _cluster(plan, "api", "api1", "upstream.db")
    assert cluster["type"] == "STATIC"
    endpoint = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
    assert endpoint["socket_address"] == {"address": "10.0.0.3", "port_value": plan.services["db"].inbound_port}
    check = cluster["health_checks"][0]
    assert check["tcp_health_check"] == {}
    # Checked at its interval before any traffic too (Envoy's default is once a minute).
    assert check["no_traffic_interval"] == check["interval"]


def test_consul_discovery_resolves_the_service_name(shop: tuple) -> None:
    plan = plan_mesh(*shop)
    cluster = _cluster(plan, "api", "api1", "upstream.db")
    assert cluster["type"] == "STRICT_DNS"
    endpoint = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
    assert endpoint["socket_address"] == {
        "address": "db.service.dc1.consul",
        "port_value": plan.services["db"].inbound_port,
    }
    assert "health_checks" not in cluster


def test_inbound_requires_a_mesh_certificate(shop: tuple) -> None:
    plan = plan_mesh(*shop)
    inbound = _listener(plan, "api", "api1", "inbound")
    assert inbound["address"]["socket_address"] == {
        "address": "10.0.0.1",
        "port_value": plan.services["api"].inbound_port,
    }
    tls = inbound["filter_chains"][0]["transport_socket"]["typed_config"]
    assert tls["require_client_certificate"] is True
    context = tls["common_tls_context"]
    assert context["tls_certificate_sds_secret_configs"][0]["sds_config"]["path_config_source"] == {
        "path": "/etc/envoy/api/sds/tls_cert.yaml",
        "watched_directory": {"path": "/etc/envoy/api/sds"},
    }
    validation = context["combined_validation_context"]
    assert validation["default_validation_context"]["match_typed_subject_alt_names"] == [
        {"san_type": "URI", "matcher": {"prefix": "spiffe://shop.mesh/"}}
    ]
    assert context["alpn_protocols"] == ["h2", "http/1.1"]


def test_rbac_allow_list_with_l7_permissions(shop: tuple) -> None:
    mesh, groups, hostvars = shop
    mesh["intentions"][0].update(paths=["/shop.Api/"], methods=["POST"])
    plan = plan_mesh(mesh, groups, hostvars)
    inbound = _listener(plan, "api", "api1", "inbound")
    manager = _filter(inbound["filter_chains"][0], "envoy.filters.network.http_connection_manager")
    rules = manager["http_filters"][0]["typed_config"]["rules"]
    assert rules["action"] == "ALLOW"
    web = rules["policies"]["web"]
    assert web["principals"] == [
        {"authenticated": {"principal_name": {"exact": "spiffe://shop.mesh/ns/default/dc/dc1/svc/web"}}}
    ]
    assert web["permissions"] == [
        {
            "and_rules": {
                "rules": [
                    {"or_rules": {"rules": [{"url_path": {"path": {"prefix": "/shop.Api/"}}}]}},
                    {"or_rules": {"rules": [{"header": {"name": ":method", "string_match": {"exact": "POST"}}}]}},
                ]
            }
        }
    ]


def test_rbac_deny_list_when_the_default_allows(shop: tuple) -> None:
    mesh, groups, hostvars = shop
    mesh["default_policy"] = "allow"
    mesh["intentions"] = [
        {"source": "web", "destination": "api", "action": "allow", "paths": ["/a"]},
        {"source": "db", "destination": "api", "action": "deny"},
    ]
    plan = plan_mesh(mesh, groups, hostvars)
    manager = _filter(
        _listener(plan, "api", "api1", "inbound")["filter_chains"][0], "envoy.filters.network.http_connection_manager"
    )
    rules = manager["http_filters"][0]["typed_config"]["rules"]
    assert rules["action"] == "DENY"
    assert rules["policies"]["db"]["permissions"] == [{"any": True}]
    assert rules["policies"]["web"]["permissions"][0]["not_rule"]["and_rules"]["rules"][0]["or_rules"]["rules"] == [
        {"url_path": {"path": {"prefix": "/a"}}}
    ]


def test_nobody_allowed_is_an_empty_allow_list(shop: tuple) -> None:
    plan = plan_mesh(*shop)
    manager = _filter(
        _listener(plan, "api", "api1", "inbound")["filter_chains"][0], "envoy.filters.network.http_connection_manager"
    )
    assert set(manager["http_filters"][0]["typed_config"]["rules"]["policies"]) == {"web"}
    mesh, groups, hostvars = shop
    mesh["services"]["web"]["sidecar"] = "envoy"
    plan = plan_mesh(mesh, groups, hostvars)
    manager = _filter(
        _listener(plan, "web", "web1", "inbound")["filter_chains"][0], "envoy.filters.network.http_connection_manager"
    )
    assert manager["http_filters"][0]["typed_config"]["rules"] == {"action": "ALLOW", "policies": {}}
    assert _http_filters(_listener(plan, "web", "web1", "inbound")) == [
        "envoy.filters.http.rbac",
        "envoy.filters.http.local_ratelimit",
        "envoy.filters.http.router",
    ]


def test_tcp_inbound_uses_network_rbac(shop: tuple) -> None:
    plan = plan_mesh(*shop)
    chain = _listener(plan, "db", "db1", "inbound")["filter_chains"][0]
    assert [item["name"] for item in chain["filters"]] == [
        "envoy.filters.network.rbac",
        "envoy.filters.network.tcp_proxy",
    ]
    assert _filter(chain, "envoy.filters.network.rbac")["rules"] == {"action": "DENY", "policies": {}}


def test_outbound_http_route_carries_timeouts_retries_and_split(shop: tuple) -> None:
    mesh, groups, hostvars = shop
    mesh["services"]["web"]["sidecar"] = "envoy"
    mesh["services"]["web"]["upstreams"][0].update(
        request_timeout="3s", retries={"attempts": 4, "retry_on": ["5xx", "reset"], "per_try_timeout": "500ms"}
    )
    plan = plan_mesh(mesh, groups, hostvars)
    listener = _listener(plan, "web", "web1", "upstream.api")
    assert listener["address"]["socket_address"] == {"address": "127.0.0.1", "port_value": 9001}
    manager = _filter(listener["filter_chains"][0], "envoy.filters.network.http_connection_manager")
    route = manager["route_config"]["virtual_hosts"][0]["routes"][0]["route"]
    assert route == {
        "timeout": "3s",
        "weighted_clusters": {
            "clusters": [{"name": "upstream.api.v1", "weight": 90}, {"name": "upstream.api.v2", "weight": 10}]
        },
        "retry_policy": {"retry_on": "5xx,reset", "num_retries": 4, "per_try_timeout": "0.500s"},
    }


def test_route_tables_do_not_wait_for_warming_clusters(shop: tuple) -> None:
    """lds.yaml lands moments after the cds.yaml that adds its clusters: a validating route table would reject it."""
    plan = plan_mesh(*shop)
    for service, host, name in (("web", "web1", "upstream.api"), ("api", "api1", "metrics")):
        manager = _filter(
            _listener(plan, service, host, name)["filter_chains"][0], "envoy.filters.network.http_connection_manager"
        )
        assert manager["route_config"]["validate_clusters"] is False


def test_default_retries_retry_resets(shop: tuple) -> None:
    mesh, groups, hostvars = shop
    mesh["services"]["web"]["sidecar"] = "envoy"
    mesh["services"]["api"].pop("retries", None)
    plan = plan_mesh(mesh, groups, hostvars)
    manager = _filter(
        _listener(plan, "web", "web1", "upstream.api")["filter_chains"][0],
        "envoy.filters.network.http_connection_manager",
    )
    route = manager["route_config"]["virtual_hosts"][0]["routes"][0]["route"]
    assert route["retry_policy"] == {"retry_on": "connect-failure,reset", "num_retries": 2}


def test_outbound_tcp_retries_connects(shop: tuple) -> None:
    plan = plan_mesh(*shop)
    proxy = _filter(
        _listener(plan, "api", "api1", "upstream.db")["filter_chains"][0], "envoy.filters.network.tcp_proxy"
    )
    assert proxy["cluster"] == "upstream.db" and proxy["max_connect_attempts"] == 3


def test_upstream_cluster_policies_and_identity(shop: tuple) -> None:
    mesh, groups, hostvars = shop
    mesh["services"]["api"]["upstreams"][0].update(
        connect_timeout="750ms",
        circuit_breaker={"max_connections": 10, "max_pending_requests": 20, "max_requests": 30, "max_retries": 1},
        outlier_detection={
            "consecutive_5xx": 2,
            "interval": "5s",
            "base_ejection_time": "1m",
            "max_ejection_percent": 50,
        },
    )
    plan = plan_mesh(mesh, groups, hostvars)
    cluster = _cluster(plan, "api", "api1", "upstream.db")
    assert cluster["connect_timeout"] == "0.750s"
    assert cluster["circuit_breakers"]["thresholds"] == [
        {"priority": "DEFAULT", "max_connections": 10, "max_pending_requests": 20, "max_requests": 30, "max_retries": 1}
    ]
    assert cluster["outlier_detection"] == {
        "consecutive_5xx": 2,
        "interval": "5s",
        "base_ejection_time": "60s",
        "max_ejection_percent": 50,
        "successful_active_health_check_uneject_host": False,
    }
    tls = cluster["transport_socket"]["typed_config"]
    assert tls["sni"] == "db.service.dc1.consul"
    san = tls["common_tls_context"]["combined_validation_context"]["default_validation_context"]
    assert san["match_typed_subject_alt_names"] == [
        {"san_type": "URI", "matcher": {"exact": "spiffe://shop.mesh/ns/default/dc/dc1/svc/db"}}
    ]
    mesh["services"]["api"]["upstreams"][0]["outlier_detection"] = {"enabled": False}
    assert "outlier_detection" not in _cluster(plan_mesh(mesh, groups, hostvars), "api", "api1", "upstream.db")


def test_grpc_clusters_speak_http2(shop: tuple) -> None:
    mesh, groups, hostvars = shop
    mesh["services"]["web"]["sidecar"] = "envoy"
    plan = plan_mesh(mesh, groups, hostvars)
    cluster = _cluster(plan, "web", "web1", "upstream.api.v1")
    options = cluster["typed_extension_protocol_options"]["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
    assert options["explicit_http_config"] == {"http2_protocol_options": {}}
    assert cluster["transport_socket"]["typed_config"]["common_tls_context"]["alpn_protocols"] == ["h2"]
    local = _cluster(plan, "api", "api1", "local_app")
    assert "typed_extension_protocol_options" in local
    assert "typed_extension_protocol_options" not in _cluster(plan, "web", "web1", "local_app")


def test_metrics_listener_exposes_the_admin_stats(shop: tuple) -> None:
    mesh, groups, hostvars = shop
    mesh["metrics"] = {"expose": True, "path": "/stats"}
    plan = plan_mesh(mesh, groups, hostvars)
    instance = _instance(plan, "api", "api1")
    listener = _listener(plan, "api", "api1", "metrics")
    assert listener["address"]["socket_address"] == {"address": "10.0.0.1", "port_value": instance.metrics_port}
    manager = _filter(listener["filter_chains"][0], "envoy.filters.network.http_connection_manager")
    route = manager["route_config"]["virtual_hosts"][0]["routes"][0]
    assert route["match"] == {"path": "/stats"}
    assert route["route"]["cluster"] == "envoy_admin"
    admin = _cluster(plan, "api", "api1", "envoy_admin")
    assert admin["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"] == {
        "address": "127.0.0.1",
        "port_value": instance.admin_port,
    }


# --------------------------------------------------------------------------------------------------------------------
# The real Envoy
# --------------------------------------------------------------------------------------------------------------------


def _validate_all_hosts(plan: MeshPlan, root: Path, validate_envoy: Callable, file_writer: Callable[..., Any]) -> int:
    checked = 0
    for host in plan.hosts:
        files = render_envoy_host(plan, host)
        file_writer(files)
        for instance in plan.hosts[host].instances:
            if instance.sidecar == "envoy":
                validate_envoy(files, f"{root}/envoy/{instance.service}")
                checked += 1
    return checked


@pytest.mark.parametrize("discovery", ["consul", "static"])
def test_envoy_accepts_the_rendered_configuration(
    shop: tuple, discovery: str, tmp_path: Path, mesh_pki, validate_envoy, file_writer
) -> None:
    mesh, groups, hostvars = shop
    for service in mesh["services"]:
        mesh_pki.issue(service)
    mesh.update(discovery=discovery, paths=_paths(tmp_path, mesh_pki.root))
    mesh["services"]["web"]["sidecar"] = "envoy"  # every branch through Envoy: rate limit, split, http, grpc, tcp
    mesh["services"]["api"].update(
        rate_limit={"requests_per_second": 5},
        retries={"retry_on": ["unavailable", "5xx"], "per_try_timeout": "1s"},
        health_check={"type": "grpc"},
    )
    mesh["intentions"][0].update(paths=["/shop.Api/"], methods=["POST"])
    if discovery == "static":
        mesh.update(default_policy="allow", metrics={"expose": True})
        mesh["intentions"].append({"source": "api", "destination": "web", "action": "deny"})
    plan = plan_mesh(mesh, groups, hostvars)
    assert _validate_all_hosts(plan, tmp_path, validate_envoy, file_writer) == 5


def test_the_transition_keeps_the_clusters_the_new_file_drops(shop: tuple) -> None:
    """api stops calling db: db's cluster stays in the transition file until the listeners no longer name it."""
    path = "/etc/envoy/api/cds.yaml"
    before = render_envoy_host(plan_mesh(*shop), "api1")[path]
    mesh, groups, hostvars = shop
    mesh["services"]["api"]["upstreams"] = []
    after = render_envoy_host(plan_mesh(mesh, groups, hostvars), "api1")[path]

    def names(text: str) -> list[str]:
        return [cluster["name"] for cluster in yaml.safe_load(text)["resources"]]

    assert "upstream.db" in names(before) and "upstream.db" not in names(after)
    merged = keep_current_clusters(after, before)
    assert names(merged) == [*names(after), "upstream.db"]
    assert (
        yaml.safe_load(merged)["resources"][-1]
        == yaml.safe_load(before)["resources"][names(before).index("upstream.db")]
    )
    # nothing dropped, or nothing running yet: the new file as it is
    assert keep_current_clusters(after, after) == after
    assert keep_current_clusters(before, after) == before
    assert keep_current_clusters(after, "") == after
