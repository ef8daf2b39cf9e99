"""The filters: thin doors that return plain data and turn validation errors into AnsibleFilterError."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
import yaml
from ansible.errors import AnsibleFilterError
from ansible_collections.vmmesh.mesh.plugins.filter import mesh as filters

FILTER_DIR = Path(filters.__file__).resolve().parent


def test_every_filter_has_a_documentation_side_file() -> None:
    names = set(filters.FilterModule().filters())
    documented = {path.stem for path in FILTER_DIR.glob("*.yml")}
    assert names <= documented, f"undocumented filters: {sorted(names - documented)}"
    for name in names:
        doc = yaml.safe_load((FILTER_DIR / f"{name}.yml").read_text())
        assert doc["DOCUMENTATION"]["name"] == name
        assert doc["DOCUMENTATION"]["short_description"]
        assert f"vmmesh.mesh.{name}" in doc["EXAMPLES"]
        assert "_value" in doc["RETURN"]
        options = set(doc["DOCUMENTATION"]["options"])
        # the mesh_* filters plan the model with the inventory
        assert {"_input", "groups", "hostvars"} <= options if name.startswith("mesh_") else "_input" in options


def test_mesh_plan(shop: tuple) -> None:
    plan = filters.mesh_plan(*shop)
    assert plan["services"]["api"]["identity"] == "spiffe://shop.mesh/ns/default/dc/dc1/svc/api"
    json.dumps(plan)


def test_mesh_render_and_host_files(shop: tuple) -> None:
    bundle = filters.mesh_render(*shop)
    assert "plan.json" in bundle and "hosts/web1/etc/haproxy/haproxy.cfg" in bundle
    only = filters.mesh_render(*shop, hosts=["db1"])
    assert not any(path.startswith("hosts/web1/") for path in only)
    files = filters.mesh_host_files(*shop, "web1")
    assert files["/etc/haproxy/haproxy.cfg"] == bundle["hosts/web1/etc/haproxy/haproxy.cfg"]
    assert list(filters.mesh_host_files(*shop, "web1", kinds=["consul"])) == ["/etc/consul.d/vmmesh-web.json"]


def test_renderer_filters(shop: tuple) -> None:
    assert "/etc/envoy/api/envoy.yaml" in filters.mesh_envoy_files(*shop, "api1")
    assert filters.mesh_envoy_files(*shop, "web1") == {}
    assert filters.mesh_haproxy_config(*shop, "web1").startswith("# HAProxy sidecar of host web1")
    assert filters.mesh_haproxy_config(*shop, "api1") == ""
    assert list(filters.mesh_consul_files(*shop, "db1")) == ["/etc/consul.d/vmmesh-db.json"]
    assert filters.mesh_prometheus_targets(*shop, "api1")[0]["labels"]["service"] == "api"
    assert filters.mesh_prometheus_targets(*shop) == []
    assert filters.mesh_topology(*shop).splitlines()[1] == "flowchart LR"
    assert filters.mesh_topology(*shop, format="dot").splitlines()[1] == 'digraph "shop" {'


def test_an_inventory_host_without_services_gets_no_files(shop: tuple) -> None:
    """A host whose last service left the model (or a Consul server) gets nothing, so the roles clean it up."""
    mesh, groups, hostvars = shop
    hostvars = {**hostvars, "consul1": {"inventory_hostname": "consul1"}}
    groups = {**groups, "all": [*groups["all"], "consul1"]}
    assert filters.mesh_envoy_files(mesh, groups, hostvars, "consul1") == {}
    assert filters.mesh_haproxy_config(mesh, groups, hostvars, "consul1") == ""
    assert filters.mesh_consul_files(mesh, groups, hostvars, "consul1") == {}
    assert filters.mesh_host_files(mesh, groups, hostvars, "consul1") == {}


def test_invalid_mesh_raises_the_aggregated_message(shop: tuple) -> None:
    mesh, groups, hostvars = shop
    mesh["services"]["web"]["upstreams"][0]["service"] = "apii"
    mesh["services"]["db"]["port"] = -1
    with pytest.raises(AnsibleFilterError) as caught:
        filters.mesh_plan(mesh, groups, hostvars)
    assert str(caught.value.message) == (
        "mesh_plan: the mesh model has 2 errors:\n"
        "  - mesh.services.db.port: -1 is out of range; use a number from 1 to 65535\n"
        "  - mesh.services.web.upstreams[0].service: unknown service 'apii'; did you mean 'api'?"
    )


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda m, g, h: filters.mesh_plan(m, None, h), "mesh_plan: pass the inventory as"),
        (lambda m, g, h: filters.mesh_host_files(m, g, h, "nohost"), "mesh_host_files: host 'nohost' runs no mesh"),
        (lambda m, g, h: filters.mesh_host_files(m, g, h, "web1", kinds=["x"]), "mesh_host_files: unknown kinds"),
        (lambda m, g, h: filters.mesh_topology(m, g, h, format="svg"), "mesh_topology: unknown format 'svg'"),
        (lambda m, g, h: filters.mesh_render(m, g, h, hosts=["x"]), "mesh_render: host 'x' runs no mesh service"),
    ],
)
def test_bad_arguments(shop: tuple, call, message: str) -> None:
    with pytest.raises(AnsibleFilterError) as caught:
        call(*shop)
    assert str(caught.value.message).startswith(message)


def test_warnings_are_displayed(shop: tuple, monkeypatch: pytest.MonkeyPatch) -> None:
    mesh, groups, hostvars = shop
    mesh["intentions"].pop(0)
    mesh["denied_upstream"] = "warning"
    shown: list[str] = []
    monkeypatch.setattr(filters._display, "warning", shown.append)
    plan = filters.mesh_plan(mesh, groups, hostvars)
    assert shown == [f"vmmesh.mesh: {plan['warnings'][0]}"]
    assert "the intentions deny web -> api" in shown[0]


def test_envoy_keep_clusters_reads_what_slurp_returns(shop: tuple) -> None:
    files = filters.mesh_envoy_files(*shop, "api1")
    cds = "/etc/envoy/api/cds.yaml"
    old = files[cds] + "  - name: upstream.gone\n    type: STATIC\n"
    kept = filters.envoy_keep_clusters(files, {cds: base64.b64encode(old.encode()).decode()})
    assert kept[cds].endswith("  - name: upstream.gone\n    type: STATIC\n")
    assert {path: text for path, text in kept.items() if path != cds} == {p: t for p, t in files.items() if p != cds}
    with pytest.raises(AnsibleFilterError):
        filters.envoy_keep_clusters(files, None)
