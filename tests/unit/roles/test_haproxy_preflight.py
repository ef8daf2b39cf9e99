"""Bad haproxy variables and unready hosts stop the role in preflight, naming the variable or service and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

ROLE = "haproxy"
UPSTREAM_PORT = 44124


def _vars(tmp_path: Path, **more) -> dict:
    mesh = {
        "name": "t",
        "discovery": "static",
        "default_sidecar": "haproxy",
        "ports": {
            "inbound": {"start": 41000, "end": 41999},
            "admin": {"start": 42000, "end": 42999},
            "metrics": {"start": 43000, "end": 43999},
        },
        "paths": {"certs": str(tmp_path / "certs"), "haproxy": str(tmp_path / "haproxy")},
        "services": {
            "web": {
                "port": 18080,
                "hosts": ["localhost"],
                "upstreams": [{"service": "db", "local_port": UPSTREAM_PORT}],
            },
            "db": {"port": 15432, "protocol": "tcp", "hosts": ["localhost"]},
        },
        "intentions": [{"source": "web", "destination": "db", "action": "allow"}],
    }
    return {"mesh": mesh, "mesh_address": "127.0.0.1", **more}


def _issue(tmp_path: Path, *services: str) -> None:
    for service in services:
        directory = tmp_path / "certs" / service
        directory.mkdir(parents=True)
        for name in ("haproxy.pem", "ca-bundle.pem"):
            (directory / name).write_text("")


def test_good_variables_and_a_ready_host_pass_preflight(run_preflight, tmp_path: Path) -> None:
    _issue(tmp_path, "web", "db")
    result = run_preflight(ROLE, _vars(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Check that no other program holds a port of HAProxy" in result.stdout
    assert "Install the distribution package" not in result.stdout


@pytest.mark.parametrize(
    ("extra_vars", "expected"),
    [
        pytest.param({"haproxy_package_name": "HA Proxy"}, ["haproxy_package_name", '"HA Proxy"'], id="bad-package"),
        pytest.param({"mesh": "shop"}, ["the variable mesh is str"], id="mesh-not-a-mapping"),
    ],
)
def test_bad_variables_stop_in_preflight(run_preflight, tmp_path: Path, extra_vars: dict, expected: list[str]) -> None:
    _issue(tmp_path, "web", "db")
    result = run_preflight(ROLE, _vars(tmp_path, **extra_vars))
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    for fragment in expected:
        assert fragment in output, f"{fragment!r} missing from:\n{output}"


def test_a_missing_certificate_names_the_service_and_the_fix(run_preflight, tmp_path: Path) -> None:
    _issue(tmp_path, "db")
    result = run_preflight(ROLE, _vars(tmp_path))
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert f"service web: {tmp_path}/certs/web/" in output
    assert "is missing on localhost" in output
    assert "vmmesh.mesh.certificates" in output


def test_a_check_run_lets_pass_only_the_certificates_a_real_run_issues_first(run_preflight, tmp_path: Path) -> None:
    # the certificates role, run before in check mode, names the directories it would fill (site.yml on fresh hosts)
    _issue(tmp_path, "db")
    due = {"_certificates_check_mode_due": [str(tmp_path / "certs" / "web")]}
    result = run_preflight(ROLE, _vars(tmp_path, **due))
    assert result.returncode == 0, result.stdout + result.stderr
    result = run_preflight(ROLE, _vars(tmp_path, _certificates_check_mode_due=[str(tmp_path / "certs" / "db")]))
    assert result.returncode != 0
    assert f"service web: {tmp_path}/certs/web/" in result.stdout + result.stderr


def test_a_taken_port_names_the_service_and_the_holder(run_preflight, port_held, tmp_path: Path) -> None:
    _issue(tmp_path, "web", "db")
    with port_held(UPSTREAM_PORT):
        result = run_preflight(ROLE, _vars(tmp_path))
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert (
        f"service web: port {UPSTREAM_PORT} (outbound listener for upstream db of HAProxy) is already taken" in output
    )


def test_a_service_whose_sidecar_role_is_not_applied_names_the_service_and_the_fix(
    run_preflight, tmp_path: Path
) -> None:
    _issue(tmp_path, "web", "db")
    extra_vars = _vars(tmp_path)
    extra_vars["mesh"]["services"]["db"]["sidecar"] = "envoy"
    result = run_preflight(ROLE, extra_vars)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert (
        "service db runs on localhost with sidecar envoy, but vmmesh.mesh.envoy is not applied to this host "
        "(sidecar roles applied: haproxy)" in output
    )
    assert "Write haproxy.cfg" not in output


def test_mesh_sidecars_declares_a_role_included_later(run_preflight, tmp_path: Path) -> None:
    _issue(tmp_path, "web", "db")
    extra_vars = _vars(tmp_path, mesh_sidecars=["envoy", "haproxy"])
    extra_vars["mesh"]["services"]["db"]["sidecar"] = "envoy"
    result = run_preflight(ROLE, extra_vars)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "db: envoy" in result.stdout
