"""consul_service: the module's four steps, diff and failures, with the agent's HTTP calls answered by a fake."""

from __future__ import annotations

from typing import Any

import pytest
from ansible_collections.vmmesh.mesh.plugins.modules import consul_service as module
from ansible_collections.vmmesh.mesh.tests.unit.plugins.module_utils.test_consul_agent import API, FakeAgent

SECRET = "8f0b6a4e-2c1d-4e5f-9a7b-3c2d1e0f9a8b"


@pytest.fixture
def agent(monkeypatch: pytest.MonkeyPatch) -> FakeAgent:
    fake = FakeAgent()
    monkeypatch.setattr(module, "http_request", lambda params: fake.request)
    return fake


def _run(run: Any, **args: Any) -> dict:
    return run(module.main, mesh="shop", token=SECRET, service_tokens={"api": SECRET}, **args)


def test_four_steps(agent: FakeAgent, run: Any) -> None:
    checked = _run(run, services=[API], _ansible_check_mode=True, _ansible_diff=True)
    assert checked["changed"] is True and checked["registered"] == ["api"]
    assert checked["diff"]["before"] == "{}\n" and '"api-app"' in checked["diff"]["after"]
    assert agent.services == {}
    done = _run(run, services=[API])
    assert done["changed"] is True and list(agent.services) == ["api"]
    assert _run(run, services=[API], _ansible_check_mode=True)["changed"] is False
    again = _run(run, services=[API], _ansible_diff=True)
    assert again["changed"] is False and again["diff"]["before"] == again["diff"]["after"]
    assert SECRET not in str([checked, done, again])


def test_removal_in_check_mode_and_for_real(agent: FakeAgent, run: Any) -> None:
    _run(run, services=[API])
    checked = _run(run, services=[], _ansible_check_mode=True)
    assert checked["changed"] is True and checked["deregistered"] == ["api"] and "api" in agent.services
    assert _run(run, services=[])["deregistered"] == ["api"] and agent.services == {}


def test_bad_definition_fails_before_any_call(agent: FakeAgent, run: Any) -> None:
    failed = _run(run, services=[dict(API, port="http")])
    assert failed["failed"] is True and "services[0].port: 'http' is not a port" in failed["msg"]
    assert agent.calls == []
