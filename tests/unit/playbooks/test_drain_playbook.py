"""playbooks/drain.yml before it touches a host: its variables and the planner's verdict on the drain."""

from __future__ import annotations

from pathlib import Path

from ansible_collections.vmmesh.mesh.tests.unit.ansible_playbook import assert_failed_with, flat_output, run_playbook

ROOT = Path(__file__).resolve().parents[3]
DRAIN = ROOT / "playbooks" / "drain.yml"
LAB = ROOT / "inventories" / "lab" / "hosts.yml"
LATER_PLAYS = ("PLAY [Callers stop using the drained host]", "PLAY [The drained host finishes")


def _nothing_changed(result) -> None:
    output = flat_output(result)
    assert "TASK [Check that every host answers]" not in output
    assert not [play for play in LATER_PLAYS if play in output]


def test_drain_passes_the_syntax_check() -> None:
    result = run_playbook(DRAIN, LAB, "--syntax-check")
    assert result.returncode == 0, flat_output(result)[-3000:]


def test_drain_host_is_required() -> None:
    result = run_playbook(DRAIN, LAB)
    assert_failed_with(result, "drain_host is null: name the one host to take out of the mesh with -e drain_host=HOST")
    _nothing_changed(result)


def test_drain_host_must_be_in_the_inventory() -> None:
    result = run_playbook(DRAIN, LAB, "-e", "drain_host=vmmesh-api9")
    assert_failed_with(result, 'drain_host is "vmmesh-api9"', "vmmesh-api1, vmmesh-api2, vmmesh-consul1, vmmesh-web1")
    _nothing_changed(result)


def test_draining_the_last_host_of_a_service_is_refused_before_any_host_is_contacted() -> None:
    # vmmesh-api2 is the lab's only Redis host; the lab's hosts need not exist, the planner runs on the controller.
    result = run_playbook(DRAIN, LAB, "-e", "drain_host=vmmesh-api2")
    assert_failed_with(
        result,
        "mesh.services.redis.hosts: every host of redis is drained (vmmesh-api2); drain one of them at a time, "
        "or remove the service from the model to take it away",
    )
    _nothing_changed(result)


def test_drain_timeout_must_be_whole_seconds() -> None:
    result = run_playbook(DRAIN, LAB, "-e", "drain_host=vmmesh-api1", "-e", "drain_timeout=soon")
    assert_failed_with(result, 'drain_timeout is "soon": give the seconds to wait for the requests in flight')
    _nothing_changed(result)
