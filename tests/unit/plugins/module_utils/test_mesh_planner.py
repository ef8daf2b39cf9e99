"""The planner: identities, ports, endpoints, authorization, edges."""

from __future__ import annotations

import copy

import pytest
from ansible_collections.vmmesh.mesh.plugins.module_utils.mesh_errors import MeshValidationError
from ansible_collections.vmmesh.mesh.plugins.module_utils.mesh_planner import (
    HAPROXY_PORT_KEY,
    Listener,
    authorizations,
    host_listeners,
    plan_mesh,
    rollout_order,
    stable_hash,
)
from ansible_collections.vmmesh.mesh.tests.unit.conftest import SHOP_LAYOUT, make_inventory


def test_identities_and_dns_names(shop: tuple) -> None:
    plan = plan_mesh(*shop)
    api = plan.services["api"]
    assert api.identity == "spiffe://shop.mesh/ns/default/dc/dc1/svc/api"
    assert api.dns_name == "api.service.dc1.consul"
    assert [(item.host, item.address, item.subsets) for item in api.instances] == [
        ("api1", "10.0.0.1", ("v1",)),
        ("api2", "10.0.0.2", ("v2",)),
    ]


def test_identity_follows_trust_domain_datacenter_and_domain(shop: tuple) -> None:
    mesh, groups, hostvars = shop
    mesh.update(trust_domain="corp.example", datacenter="eu1", consul={"domain": "mesh.internal"})
    plan = plan_mesh(mesh, groups, hostvars)
    assert plan.services["db"].identity == "spiffe://corp.example/ns/default/dc/eu1/svc/db"
    assert plan.services["db"].dns_name == "db.service.eu1.mesh.internal"
    target = plan.services["web"].upstreams[0].targets[0]
    assert target.dns_name == "v1.api.service.eu1.mesh.internal"


def test_inbound_port_is_mesh_wide_and_comes_from_the_hash(shop: tuple) -> None:
    plan = plan_mesh(*shop)
    for name, service in plan.services.items():
        assert {instance.inbound_port for instance in service.instances} == {service.inbound_port}
        assert service.inbound_port == 21000 + stable_hash(name) % 4000


def test_inbound_port_override(shop: tuple) -> None:
    mesh, groups, hostvars = shop
    mesh["services"]["api"]["inbound_port"] = 8443
    plan = plan_mesh(mesh, groups, hostvars)
    assert plan.services["api"].inbound_port == 8443
    assert plan.services["web"].upstreams[0].port == 8443


def test_adding_or_removing_an_unrelated_service_moves_no_port(shop: tuple) -> None:
    mesh, groups, hostvars = shop
    before = plan_mesh(copy.deepcopy(mesh), groups, hostvars)
    groups["cache"] = ["cache1"]
    hostvars["cache1"] = {"ansible_host": "10.0.0.99"}
    mesh["services"]["cache"] = {"port": 6379, "protocol": "tcp", "hosts": "cache"}
    del mesh["services"]["db"]
    mesh["services"]["web"]["upstreams"].pop()
    mesh["services"]["api"]["upstreams"] = []
    mesh["intentions"].pop()
    after = plan_mesh(mesh, groups, hostvars)
    for name in ("web", "api"):
        assert after.services[name].inbound_port == before.services[name].inbound_port
        assert [(i.admin_port, i.metrics_port) for i in after.services[name].instances] == [
            (i.admin_port, i.metrics_port) for i in before.services[name].instances
        ]


def test_probing_moves_a_service_whose_slot_is_taken_on_a_shared_host(shop: tuple) -> None:
    mesh, groups, hostvars = shop
    natural = 21000 + stable_hash("api") % 4000
    mesh["services"]["db"]["hosts"] = ["db1", "api1"]
    mesh["services"]["db"]["inbound_port"] = natural
    plan = plan_mesh(mesh, groups, hostvars)
    assert plan.services["api"].inbound_port == natural + 1 if natural < 24999 else 21000
    # the same explicit port on a host that api does not use leaves api alone
    mesh["services"]["db"]["hosts"] = ["db1"]
    assert plan_mesh(mesh, groups, hostvars).services["api"].inbound_port == natural


def test_admin_and_metrics_ports_are_per_host_and_local(shop: tuple) -> None:
    mesh, groups, hostvars = shop
    plan = plan_mesh(mesh, groups, hostvars)
    for instance in plan.services["api"].instances:
        assert 19000 <= instance.admin_port <= 19999
        assert 20000 <= instance.metrics_port <= 20999
        assert instance.metrics_address == "127.0.0.1"
    web1 = plan.hosts["web1"]
    assert web1.haproxy is not None
    assert web1.haproxy.admin_port == 19000 + stable_hash(HAPROXY_PORT_KEY) % 1000
    assert web1.haproxy.services == ("web",)
    mesh["metrics"] = {"expose": True}
    exposed = plan_mesh(mesh, groups, hostvars)
    assert exposed.services["api"].instances[0].metrics_address == "10.0.0.1"
    assert exposed.hosts["web1"].haproxy.metrics_address == "10.0.0.4"


def test_two_sidecars_on_one_host_get_distinct_ports(inventory) -> None:
    groups, hostvars = inventory({"box": ["box1"]})
    services = {f"s{index}": {"port": 8000 + index, "hosts": "box", "protocol": "tcp"} for index in range(40)}
    plan = plan_mesh({"name": "dense", "services": services}, groups, hostvars)
    listeners = host_listeners(plan, "box1")
    ports = [listener.port for listener in listeners]
    assert len(ports) == len(set(ports)) == 40 * 3
    assert {listener.kind for listener in listeners} == {"inbound", "admin", "metrics"}


def test_host_listeners(shop: tuple) -> None:
    plan = plan_mesh(*shop)
    web = plan.services["web"]
    listeners = host_listeners(plan, "web1")
    haproxy = plan.hosts["web1"].haproxy
    assert haproxy is not None
    assert listeners == sorted(
        [
            Listener("inbound", "10.0.0.4", web.inbound_port, "web"),
            Listener("outbound", "127.0.0.1", 9001, "web", "api"),
            Listener("outbound", "127.0.0.1", 9002, "web", "db"),
            Listener("admin", "127.0.0.1", haproxy.admin_port, None),
            Listener("metrics", "127.0.0.1", haproxy.metrics_port, None),
        ],
        key=lambda item: (item.port, item.kind, item.service or ""),
    )


def test_each_sidecar_gets_only_its_own_upstreams(shop: tuple) -> None:
    plan = plan_mesh(*shop)
    assert [upstream.service for upstream in plan.services["web"].upstreams] == ["api", "db"]
    assert [upstream.service for upstream in plan.services["api"].upstreams] == ["db"]
    assert plan.services["db"].upstreams == ()


def test_static_endpoints_and_subsets(shop: tuple) -> None:
    plan = plan_mesh(*shop)
    split = plan.services["web"].upstreams[0]
    assert [(target.name, target.subset, target.weight) for target in split.targets] == [
        ("api.v1", "v1", 90),
        ("api.v2", "v2", 10),
    ]
    assert [[(e.host, e.address, e.port) for e in target.endpoints] for target in split.targets] == [
        [("api1", "10.0.0.1", split.port)],
        [("api2", "10.0.0.2", split.port)],
    ]
    whole = plan.services["api"].upstreams[0]
    assert [(target.name, target.subset, target.weight, target.dns_name) for target in whole.targets] == [
        ("db", None, 100, "db.service.dc1.consul")
    ]


def test_authorization_precedence(shop: tuple) -> None:
    mesh, groups, hostvars = shop
    mesh["intentions"] = [
        {"source": "*", "destination": "*", "action": "allow"},
        {"source": "web", "destination": "*", "action": "deny"},
        {"source": "*", "destination": "api", "action": "deny"},
        {"source": "web", "destination": "api", "action": "allow", "paths": ["/shop."], "methods": ["POST"]},
        {"source": "api", "destination": "db", "action": "allow"},
    ]
    mesh["denied_upstream"] = "warning"
    plan = plan_mesh(mesh, groups, hostvars)
    api = plan.services["api"].authorization
    assert api.default_action == "deny"  # *->api beats web->* and *->*
    assert [(rule.source, rule.action, rule.paths, rule.methods) for rule in api.rules] == [
        ("web", "allow", ("/shop.",), ("POST",))
    ]
    db = plan.services["db"].authorization
    assert db.default_action == "allow"  # *->*
    assert [(rule.source, rule.action) for rule in db.rules] == [("web", "deny")]  # web->* beats *->*
    assert db.decision("api") == "allow" and db.decision("web") == "deny"
    assert [(edge.source, edge.destination) for edge in plan.edges] == [("api", "db"), ("web", "api")]
    assert plan.warnings == (
        "mesh.services.web.upstreams[1].service: the intentions deny web -> db; add the intention "
        "{source: web, destination: db, action: allow} or remove the upstream",
    )
    assert [upstream.allowed for upstream in plan.services["web"].upstreams] == [True, False]


def test_default_policy_applies_when_no_intention_matches(shop: tuple) -> None:
    mesh, groups, hostvars = shop
    mesh["intentions"] = []
    mesh["default_policy"] = "allow"
    plan = plan_mesh(mesh, groups, hostvars)
    assert all(service.authorization.default_action == "allow" for service in plan.services.values())
    assert all(service.authorization.rules == () for service in plan.services.values())
    assert len(plan.edges) == 3


def test_authorizations_drop_rules_that_repeat_the_default(shop: tuple) -> None:
    mesh, groups, hostvars = shop
    mesh["default_policy"] = "allow"
    mesh["intentions"] = [{"source": "web", "destination": "api", "action": "allow"}]
    model_plan = plan_mesh(mesh, groups, hostvars)
    assert authorizations(model_plan.model)["api"].rules == ()


def test_edges_list_allowed_upstreams(shop: tuple) -> None:
    plan = plan_mesh(*shop)
    assert [(edge.source, edge.destination, edge.local_port) for edge in plan.edges] == [
        ("api", "db", 9003),
        ("web", "api", 9001),
        ("web", "db", 9002),
    ]


def test_the_plan_is_deterministic(shop: tuple) -> None:
    mesh, groups, hostvars = shop
    first = plan_mesh(mesh, groups, hostvars)
    reordered = copy.deepcopy(mesh)
    reordered["services"] = dict(reversed(list(mesh["services"].items())))
    second = plan_mesh(reordered, dict(reversed(list(groups.items()))), dict(reversed(list(hostvars.items()))))
    assert first.services == second.services
    assert first.hosts == second.hosts
    assert first.edges == second.edges


def test_the_planner_reports_model_and_plan_errors_together(shop: tuple) -> None:
    mesh, groups, hostvars = shop
    mesh["services"]["web"]["protocol"] = "quic"
    mesh["services"]["api"]["upstreams"][0]["local_port"] = 8081
    with pytest.raises(MeshValidationError) as caught:
        plan_mesh(mesh, groups, hostvars)
    assert [error.code for error in caught.value.errors] == ["invalid_value", "port_collision"]


# --------------------------------------------------------------------------------------------------------------------
# Drained hosts (host variable mesh_drained)


def _drain(shop: tuple, *hosts: str, value=True) -> tuple:
    mesh, groups, hostvars = shop
    hostvars = {name: dict(variables) for name, variables in hostvars.items()}
    for host in hosts:
        hostvars[host]["mesh_drained"] = value
    return mesh, groups, hostvars


def test_a_drained_host_runs_nothing_and_nobody_calls_it(shop: tuple) -> None:
    before = plan_mesh(*shop)
    plan = plan_mesh(*_drain(shop, "web2"))
    assert plan.model.drained_hosts == frozenset({"web2"})
    assert "web2" not in plan.hosts and "web1" in plan.hosts
    assert [item.host for item in plan.services["web"].instances] == ["web1"]
    # nothing else moves: every port of the other hosts is the one it had
    for host in plan.hosts:
        assert host_listeners(plan, host) == host_listeners(before, host)


def test_a_drained_subset_gives_its_weight_to_the_others(shop: tuple) -> None:
    plan = plan_mesh(*_drain(shop, "api2"))
    (upstream,) = [item for item in plan.services["web"].upstreams if item.service == "api"]
    assert [(target.subset, target.weight, [e.host for e in target.endpoints]) for target in upstream.targets] == [
        ("v1", 100, ["api1"])
    ]
    assert [item.host for item in plan.services["api"].instances] == ["api1"]


def test_draining_every_host_of_a_service_is_an_error(shop: tuple) -> None:
    with pytest.raises(MeshValidationError) as caught:
        plan_mesh(*_drain(shop, "db1"))
    assert str(caught.value).endswith(
        "mesh.services.db.hosts: every host of db is drained (db1); drain one of them at a time, "
        "or remove the service from the model to take it away"
    )


@pytest.mark.parametrize(("value", "drained"), [(False, set()), ("false", set()), ("true", {"web2"}), (None, set())])
def test_mesh_drained_takes_booleans_and_their_strings(shop: tuple, value, drained: set) -> None:
    assert plan_mesh(*_drain(shop, "web2", value=value)).model.drained_hosts == drained


def test_mesh_drained_must_be_a_boolean(shop: tuple) -> None:
    with pytest.raises(MeshValidationError) as caught:
        plan_mesh(*_drain(shop, "web2", value="soon"))
    assert "host variable mesh_drained of web2: 'soon' is not a boolean; set it to true" in str(caught.value)


def test_draining_every_subset_of_a_split_is_an_error_even_with_other_hosts_left(shop: tuple) -> None:
    """api3 runs api outside both subsets: the service has an instance left, web's split has nowhere to go."""
    mesh, _groups, _hostvars = shop
    groups, hostvars = make_inventory({**SHOP_LAYOUT, "api": ["api1", "api2", "api3"]})
    hostvars["api1"]["mesh_drained"] = hostvars["api2"]["mesh_drained"] = True
    with pytest.raises(MeshValidationError) as caught:
        plan_mesh(mesh, groups, hostvars)
    assert "every host of the subsets of api that web calls is drained; drain one subset's hosts at a time" in str(
        caught.value
    )


def test_the_rollout_takes_called_services_before_their_callers(shop: tuple) -> None:
    """db (no upstream) before api (calls db) before web (calls api and db); hosts by name within a level."""
    assert rollout_order(plan_mesh(*shop)) == ["db1", "api1", "api2", "web1", "web2"]


def test_the_rollout_survives_a_cycle(shop: tuple) -> None:
    mesh, groups, hostvars = shop
    mesh["services"]["db"]["protocol"] = "http"
    mesh["services"]["db"]["upstreams"] = [{"service": "web", "local_port": 9010}]
    mesh["intentions"].append({"source": "db", "destination": "web", "action": "allow"})
    assert sorted(rollout_order(plan_mesh(mesh, groups, hostvars))) == ["api1", "api2", "db1", "web1", "web2"]
