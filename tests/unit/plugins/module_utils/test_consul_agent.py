"""consul_agent: payloads, normalisation of what the agent returns, the changes to make, against a small fake agent."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from ansible_collections.vmmesh.mesh.plugins.module_utils.consul_agent import (
    DIGEST_META,
    AgentClient,
    ConsulAgentError,
    ConsulDefinitionError,
    api_payload,
    apply_changes,
    diff_text,
    duration_ms,
    normalise_agent,
    normalise_wanted,
    owned_services,
    plan_changes,
    wanted_payloads,
)

API = {
    "id": "api",
    "name": "api",
    "address": "10.0.0.1",
    "port": 21000,
    "tags": ["vmmesh", "http", "vmmesh"],
    "meta": {"vmmesh_sidecar": "envoy"},
    "checks": [
        {"id": "api-sidecar", "name": "api sidecar", "tcp": "10.0.0.1:21000", "interval": "10s", "timeout": "2s"},
        {"id": "api-app", "name": "api app", "http": "http://127.0.0.1:8081/", "interval": "1m", "timeout": "500ms"},
    ],
}


class FakeAgent:
    """Answers the agent API calls the module makes the way Consul 1.16 does (shapes seen on the real agent)."""

    def __init__(self) -> None:
        self.services: dict[str, dict[str, Any]] = {}
        self.checks: dict[str, dict[str, Any]] = {}
        self.calls: list[tuple[str, str, str]] = []
        self.forbidden: set[str] = set()

    @staticmethod
    def _go_duration(text: str | None) -> str:
        return {"1m": "1m0s"}.get(text or "", text or "")

    def request(self, method: str, path: str, body: Any, token: str) -> tuple[int, Any]:
        self.calls.append((method, path, token))
        if token in self.forbidden:
            return 403, "Permission denied"
        if method == "GET" and path == "/v1/agent/services":
            return 200, copy.deepcopy(self.services)
        if method == "GET" and path == "/v1/agent/checks":
            return 200, copy.deepcopy(self.checks)
        if method == "PUT" and path.startswith("/v1/agent/service/register"):
            self.checks = {k: v for k, v in self.checks.items() if v["ServiceID"] != body["ID"]}
            self.services[body["ID"]] = {
                "ID": body["ID"],
                "Service": body["Name"],
                "Tags": list(body["Tags"]),
                "Meta": dict(body["Meta"]),
                "Port": body["Port"],
                "Address": body["Address"],
                "Weights": {"Passing": 1, "Warning": 1},
                "EnableTagOverride": False,
                "Datacenter": "dc1",
            }
            for check in body["Checks"]:
                kind = "http" if "HTTP" in check else "grpc" if "GRPC" in check else "tcp"
                self.checks[check["CheckID"]] = {
                    "CheckID": check["CheckID"],
                    "Name": check["Name"],
                    "Status": "critical",
                    "ServiceID": body["ID"],
                    "ServiceName": body["Name"],
                    "Type": kind,
                    "Interval": self._go_duration(check.get("Interval")),
                    "Timeout": self._go_duration(check.get("Timeout")),
                    "Definition": {},
                }
            return 200, None
        if method == "PUT" and path.startswith("/v1/agent/service/deregister/"):
            service_id = path.rsplit("/", 1)[1]
            if service_id not in self.services:
                return 404, f'Unknown service ID "{service_id}"'
            del self.services[service_id]
            self.checks = {k: v for k, v in self.checks.items() if v["ServiceID"] != service_id}
            return 200, None
        return 404, "no such endpoint"


def _keep(agent: FakeAgent, definitions: list[dict], mesh: str = "shop", tokens: dict | None = None, dry=False):
    client = AgentClient(agent.request, "management")
    wanted = wanted_payloads(definitions, mesh)
    changes = plan_changes(wanted, owned_services(client.services(), client.checks(), mesh))
    if not dry:
        apply_changes(client, changes, wanted, tokens)
    return changes


@pytest.mark.parametrize(
    ("text", "millis"),
    [("10s", 10000), ("1m0s", 60000), ("500ms", 500), ("1.5s", 1500), ("1h2m3s", 3723000), ("0", 0), ("", None)],
)
def test_durations_in_go_notation(text: str, millis: int | None) -> None:
    assert duration_ms(text) == millis


def test_a_bad_duration_names_the_check() -> None:
    bad = copy.deepcopy(API)
    bad["checks"][0]["interval"] = "ten seconds"
    with pytest.raises(ConsulDefinitionError, match=r"services\[0\]\.checks\[0\]\.interval: 'ten seconds'"):
        wanted_payloads([bad], "shop")


def test_payload_sorts_tags_and_owns_the_registration() -> None:
    payload = api_payload(API, "shop")
    assert payload["Tags"] == ["http", "vmmesh"]
    assert payload["Meta"]["vmmesh_mesh"] == "shop"
    assert [c["CheckID"] for c in payload["Checks"]] == ["api-app", "api-sidecar"]
    assert payload["Checks"][0] == {
        "CheckID": "api-app",
        "Name": "api app",
        "HTTP": "http://127.0.0.1:8081/",
        "Method": "GET",
        "Interval": "1m",
        "Timeout": "500ms",
    }


def test_the_digest_follows_a_check_target_the_agent_does_not_return() -> None:
    moved = copy.deepcopy(API)
    moved["checks"][1]["http"] = "http://127.0.0.1:9090/"
    assert api_payload(API, "shop")["Meta"][DIGEST_META] != api_payload(moved, "shop")["Meta"][DIGEST_META]
    assert api_payload(API, "shop")["Meta"][DIGEST_META] == api_payload(copy.deepcopy(API), "shop")["Meta"][DIGEST_META]


def test_file_form_with_a_service_key_is_accepted() -> None:
    assert wanted_payloads([{"service": API}], "shop") == wanted_payloads([API], "shop")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"id": "bad id"}, r"services\[0\]\.id: 'bad id' is not a service id"),
        ({"port": 0}, r"services\[0\]\.port: 0 is not a port"),
        ({"meta": {"vmmesh_mesh": "other"}}, r"vmmesh_mesh: 'other' is not this mesh \('shop'\)"),
        ({"meta": {DIGEST_META: "x"}}, r"vmmesh_definition: reserved"),
        ({"meta": {"weight": 3}}, r"meta must map names to strings"),
        ({"checks": [{"id": "x", "tcp": "a:1", "http": "http://a/"}]}, r"exactly one of http, grpc or tcp"),
        ({"checks": [{"tcp": "a:1"}]}, r"checks\[0\]: .* needs an id"),
    ],
)
def test_bad_definitions_are_refused_with_their_key_path(change: dict, message: str) -> None:
    with pytest.raises(ConsulDefinitionError, match=message):
        wanted_payloads([dict(API, **change)], "shop")


def test_duplicate_ids_are_refused() -> None:
    with pytest.raises(ConsulDefinitionError, match=r"services\[1\]\.id: 'api' is registered twice"):
        wanted_payloads([API, API], "shop")


def test_what_the_agent_returns_normalises_to_what_was_wanted() -> None:
    agent = FakeAgent()
    _keep(agent, [API])
    view = normalise_agent(agent.services["api"], agent.checks.values())
    assert view == normalise_wanted(api_payload(API, "shop"))
    app = {"id": "api-app", "name": "api app", "type": "http", "interval_ms": 60000, "timeout_ms": 500}
    assert view["checks"][0] == app


def test_four_steps_against_the_fake_agent() -> None:
    agent = FakeAgent()
    assert _keep(agent, [API], dry=True).register == ["api"]
    assert agent.services == {}, "a dry run registers nothing"
    assert _keep(agent, [API]).register == ["api"]
    assert not _keep(agent, [API], dry=True).changed
    writes = [call for call in agent.calls if call[0] == "PUT"]
    assert not _keep(agent, [API]).changed
    assert [call for call in agent.calls if call[0] == "PUT"] == writes, "an unchanged run writes nothing"


@pytest.mark.parametrize(
    "change",
    [
        {"port": 21001},
        {"address": "10.0.0.9"},
        {"tags": ["http"]},
        {"meta": {"vmmesh_sidecar": "haproxy"}},
        {"checks": API["checks"][:1]},
    ],
)
def test_a_changed_definition_is_registered_again(change: dict) -> None:
    agent = FakeAgent()
    _keep(agent, [API])
    assert _keep(agent, [dict(API, **change)]).register == ["api"]
    assert not _keep(agent, [dict(API, **change)]).changed


def test_a_check_changed_behind_the_modules_back_is_seen() -> None:
    agent = FakeAgent()
    _keep(agent, [API])
    agent.checks["api-sidecar"]["Interval"] = "30s"
    assert _keep(agent, [API]).register == ["api"]


def test_only_this_meshs_registrations_are_removed() -> None:
    agent = FakeAgent()
    web = dict(API, id="web", name="web", checks=[])
    _keep(agent, [API, web])
    _keep(agent, [dict(API, id="other-api", checks=[])], mesh="other")
    agent.services["hand-made"] = {"ID": "hand-made", "Service": "hand-made", "Meta": {}, "Port": 1}
    changes = _keep(agent, [API])
    assert changes.deregister == ["web"] and changes.register == []
    assert sorted(agent.services) == ["api", "hand-made", "other-api"]
    assert "api-app" in agent.checks


def test_without_purge_the_rest_stays() -> None:
    agent = FakeAgent()
    client = AgentClient(agent.request, "management")
    _keep(agent, [API, dict(API, id="web", name="web", checks=[])])
    changes = plan_changes(
        wanted_payloads([API], "shop"), owned_services(client.services(), client.checks(), "shop"), purge=False
    )
    assert not changes.changed and sorted(changes.after) == ["api", "web"]


def test_each_service_is_registered_with_its_own_token() -> None:
    agent = FakeAgent()
    metrics = dict(API, id="vmmesh-envoy-metrics-api", name="vmmesh-envoy-metrics", checks=[])
    _keep(agent, [API, metrics], tokens={"api": "api-token"})
    registrations = [(path.split("?")[0], token) for method, path, token in agent.calls if method == "PUT"]
    assert registrations == [
        ("/v1/agent/service/register", "api-token"),
        ("/v1/agent/service/register", "management"),
    ]


def test_an_acl_refusal_says_what_is_missing() -> None:
    agent = FakeAgent()
    agent.forbidden.add("management")
    with pytest.raises(ConsulAgentError, match=r"GET /v1/agent/services: HTTP 403 \(the token lacks the ACL rights"):
        _keep(agent, [API])


def test_diff_text_is_sorted_json() -> None:
    assert diff_text({"b": {"x": 1}, "a": {}}) == '{\n  "a": {},\n  "b": {\n    "x": 1\n  }\n}\n'
