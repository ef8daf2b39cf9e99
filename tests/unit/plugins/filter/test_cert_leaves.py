"""cert_leaves: the leaf certificates of one host, from the plan or from explicit services, and every bad input."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from ansible.errors import AnsibleFilterError
from ansible_collections.vmmesh.mesh.plugins.filter import cert_leaves as module
from ansible_collections.vmmesh.mesh.plugins.filter import mesh as mesh_filters

cert_leaves = module.cert_leaves
SPIFFE = "spiffe://shop.mesh/ns/default/dc/dc1/svc/"


@pytest.fixture
def plan(shop: tuple) -> dict:
    return mesh_filters.mesh_plan(*shop)


def _names(leaves: list[dict]) -> list[str]:
    return [leaf["name"] for leaf in leaves]


def _error(*args, **kwargs) -> str:
    with pytest.raises(AnsibleFilterError) as caught:
        cert_leaves(*args, **kwargs)
    return str(caught.value)


def test_documentation_side_file() -> None:
    doc = yaml.safe_load((Path(module.__file__).with_suffix(".yml")).read_text())
    assert doc["DOCUMENTATION"]["name"] == "cert_leaves"
    assert "vmmesh.mesh.cert_leaves" in doc["EXAMPLES"]
    assert set(doc["DOCUMENTATION"]["options"]) >= {"_input", "host", "services", "consul"}
    assert module.FilterModule().filters() == {"cert_leaves": cert_leaves}


def test_services_of_the_host_come_from_the_plan(plan: dict) -> None:
    leaves = cert_leaves(plan, "web1")
    assert leaves == [
        {
            "name": "web",
            "kind": "haproxy",
            "directory": "/etc/vmmesh/certs/web",
            "common_name": "web",
            "identity": SPIFFE + "web",
            "dns_names": ["web.service.dc1.consul"],
            "ip_addresses": [],
            "owner": "root",
            "group": "root",
            "combined_pem": True,
        }
    ]
    api = cert_leaves(plan, "api1")
    assert _names(api) == ["api"]
    assert api[0]["kind"] == "envoy" and api[0]["combined_pem"] is False
    assert _names(cert_leaves(plan, "db1")) == ["db"]


def test_a_host_without_services_gets_nothing(plan: dict) -> None:
    assert cert_leaves(plan, "elsewhere") == []
    assert cert_leaves({}, "web1") == []
    assert cert_leaves(None, "web1") == []


def test_owners_by_sidecar_and_default(plan: dict) -> None:
    owners = {"envoy": {"owner": "envoy", "group": "envoy"}}
    api = cert_leaves(plan, "api1", owner="mesh", group="mesh", sidecar_owners=owners)[0]
    web = cert_leaves(plan, "web1", owner="mesh", group="mesh", sidecar_owners=owners)[0]
    assert (api["owner"], api["group"]) == ("envoy", "envoy")
    assert (web["owner"], web["group"]) == ("mesh", "mesh")


def test_directory_is_configurable(plan: dict) -> None:
    assert cert_leaves(plan, "web1", directory="/srv/certs/")[0]["directory"] == "/srv/certs/web"


def test_explicit_services_take_the_rest_from_the_plan(plan: dict) -> None:
    leaves = cert_leaves(plan, "api1", services=[{"name": "api", "owner": "envoy", "group": "envoy"}])
    assert leaves[0]["identity"] == SPIFFE + "api"
    assert leaves[0]["dns_names"] == ["api.service.dc1.consul"]
    assert leaves[0]["kind"] == "envoy" and leaves[0]["owner"] == "envoy"


def test_explicit_services_without_a_plan() -> None:
    leaves = cert_leaves(
        {},
        "h1",
        services=[
            {
                "name": "legacy",
                "identity": "spiffe://corp.mesh/ns/default/dc/dc1/svc/legacy",
                "dns_names": ["legacy.internal", "legacy.internal"],
                "ip_addresses": ["10.0.0.5"],
                "sidecar": "haproxy",
                "common_name": "legacy-cn",
            }
        ],
    )
    assert leaves[0]["dns_names"] == ["legacy.internal"]
    assert leaves[0]["ip_addresses"] == ["10.0.0.5"]
    assert leaves[0]["combined_pem"] is True and leaves[0]["common_name"] == "legacy-cn"


def test_consul_server_and_client(plan: dict) -> None:
    server = cert_leaves(plan, "web1", consul={"role": "server", "extra_names": ["DNS:c1.example.net", "IP:10.0.0.9"]})
    assert _names(server) == ["consul", "web"]
    assert server[0] == {
        "name": "consul",
        "kind": "consul",
        "directory": "/etc/vmmesh/certs/consul",
        "common_name": "server.dc1.consul",
        "identity": "",
        "dns_names": ["c1.example.net", "localhost", "server.dc1.consul"],
        "ip_addresses": ["10.0.0.9", "127.0.0.1"],
        "owner": "root",
        "group": "root",
        "combined_pem": False,
    }
    client = cert_leaves({}, "h1", consul={"role": "client", "datacenter": "eu1", "domain": "corp", "owner": "consul"})
    assert client[0]["common_name"] == "client.eu1.corp" and client[0]["owner"] == "consul"
    assert cert_leaves({}, "h1", consul={"role": "none"}) == []


def test_identity_that_does_not_match_the_plan(plan: dict) -> None:
    message = _error(
        plan, "api1", services=[{"name": "api", "identity": "spiffe://other.mesh/ns/default/dc/dc1/svc/api"}]
    )
    assert "host api1" in message
    assert "certificates_services[0].identity" in message
    assert f"does not match the plan's identity '{SPIFFE}api'" in message
    assert "remove the identity key" in message


@pytest.mark.parametrize(
    ("services", "expected"),
    [
        pytest.param(
            [{"name": "nope"}], "service 'nope' is not in the plan (mesh.services has: api, db, web)", id="unknown"
        ),
        pytest.param([{"name": "web"}], "the plan places service 'web' on web1, web2, not on api1", id="other-host"),
        pytest.param([{"name": "api"}, {"name": "api"}], "service 'api' is listed twice", id="twice"),
        pytest.param([{"name": "api", "colour": "red"}], "unknown keys ['colour']", id="unknown-key"),
        pytest.param([{"name": "Api!"}], "certificates_services[0].name: 'Api!' is not a service name", id="bad-name"),
        pytest.param(["api"], "certificates_services[0]: 'api' is not a mapping", id="not-a-mapping"),
        pytest.param({"name": "api"}, "is not a list of services", id="not-a-list"),
        pytest.param(
            [{"name": "api", "sidecar": "nginx"}], "sidecar: 'nginx'; use one of envoy, haproxy, none", id="sidecar"
        ),
        pytest.param([{"name": "api", "dns_names": "api.local"}], "dns_names: 'api.local' is not a list", id="dns-str"),
        pytest.param([{"name": "api", "ip_addresses": ["10.0.0.300"]}], "'10.0.0.300' is not valid", id="bad-ip"),
        pytest.param([{"name": "api", "owner": ""}], "certificates_services[0].owner: '' is not a user", id="owner"),
        pytest.param([{"name": "api", "common_name": "x" * 65}], "give 1 to 64 characters", id="long-cn"),
    ],
)
def test_bad_explicit_services(plan: dict, services: object, expected: str) -> None:
    assert expected in _error(plan, "api1", services=services)


def test_explicit_service_without_plan_needs_an_identity() -> None:
    message = _error({}, "h1", services=[{"name": "api"}, {"name": "db", "identity": "http://db"}])
    assert "certificates_services[0].identity: missing" in message
    assert "certificates_services[1].identity: 'http://db' is not a SPIFFE ID" in message
    assert "2 problem(s)" in message, "every problem is reported at once"


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        pytest.param({"consul": {"role": "leader"}}, "certificates_consul_role: 'leader'", id="role"),
        pytest.param({"consul": {"role": "server", "datacenter": "DC 1"}}, "certificates_consul_datacenter", id="dc"),
        pytest.param({"consul": {"role": "server", "extra_names": "x"}}, "extra_names: 'x' is not a list", id="extra"),
        pytest.param({"consul": {"role": "server", "extra_names": ["IP:nope"]}}, "'IP:nope' is not valid", id="ip"),
        pytest.param(
            {"sidecar_owners": {"nginx": {"owner": "x"}}}, "certificates_sidecar_owners.nginx", id="owners-kind"
        ),
        pytest.param(
            {"sidecar_owners": ["envoy"]}, "certificates_sidecar_owners: ['envoy'] is not a mapping", id="owners"
        ),
    ],
)
def test_bad_settings(plan: dict, kwargs: dict, expected: str) -> None:
    assert expected in _error(plan, "api1", **kwargs)


def test_a_service_named_consul_collides_with_the_agent() -> None:
    services = [{"name": "consul", "identity": "spiffe://a.mesh/ns/default/dc/dc1/svc/consul"}]
    message = _error({}, "h1", services=services, consul={"role": "client"})
    assert "would share /etc/vmmesh/certs/consul with the Consul agent's certificate" in message


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        pytest.param(("not a plan", "h1"), "pass the plan", id="plan"),
        pytest.param(({}, ""), "host must be an inventory host name", id="host"),
        pytest.param(({}, "h1", None, "relative/dir"), "must be an absolute path", id="directory"),
    ],
)
def test_bad_arguments(args: tuple, expected: str) -> None:
    assert expected in _error(*args)
