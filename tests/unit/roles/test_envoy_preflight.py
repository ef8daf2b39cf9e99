"""Bad envoy variables and unready hosts stop the role in preflight, naming the variable or the service and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

ROLE = "envoy"
UPSTREAM_PORT = 44123


def _mesh(tmp_path: Path) -> dict:
    return {
        "name": "t",
        "discovery": "static",
        "ports": {
            "inbound": {"start": 41000, "end": 41999},
            "admin": {"start": 42000, "end": 42999},
            "metrics": {"start": 43000, "end": 43999},
        },
        "paths": {"certs": str(tmp_path / "certs"), "envoy": str(tmp_path / "envoy")},
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


def _issue(tmp_path: Path, *services: str) -> None:
    for service in services:
        directory = tmp_path / "certs" / service
        directory.mkdir(parents=True)
        for name in ("cert.pem", "key.pem", "ca-bundle.pem"):
            (directory / name).write_text("")


def _vars(tmp_path: Path, **more) -> dict:
    return {
        "mesh": _mesh(tmp_path),
        "mesh_address": "127.0.0.1",
        "envoy_install_method": "local",
        "envoy_local_binary": "/opt/envoy",
        **more,
    }


def test_good_variables_and_a_ready_host_pass_preflight(run_preflight, tmp_path: Path) -> None:
    _issue(tmp_path, "web", "db")
    result = run_preflight(ROLE, _vars(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Check that no other program holds a port of an Envoy sidecar" in result.stdout
    assert "Install Envoy" not in result.stdout


@pytest.mark.parametrize(
    ("extra_vars", "expected"),
    [
        pytest.param(
            {"envoy_install_method": "tarball"},
            ["envoy_install_method", "tarball", "release", "local"],
            id="unknown-install-method",
        ),
        pytest.param(
            {"envoy_local_binary": ""},
            ["envoy_local_binary", "absolute path", "controller"],
            id="local-without-binary",
        ),
        pytest.param(
            {"envoy_install_method": "release", "envoy_version": "1.30.0"},
            ["envoy_release_sha256", "1.30.0", "pinned only for 1.36.4"],
            id="release-without-checksum",
        ),
        pytest.param(
            {"envoy_log_level": "loud"},
            ["envoy_log_level", "loud", "critical"],
            id="unknown-log-level",
        ),
        pytest.param(
            {"envoy_concurrency": 0},
            ["envoy_concurrency", "at least 1"],
            id="no-worker-threads",
        ),
    ],
)
def test_bad_variables_stop_in_preflight(run_preflight, tmp_path: Path, extra_vars: dict, expected: list[str]) -> None:
    _issue(tmp_path, "web", "db")
    result = run_preflight(ROLE, _vars(tmp_path, **extra_vars))
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    for fragment in expected:
        assert fragment in output, f"{fragment!r} missing from:\n{output}"


def test_a_missing_mesh_stops_in_preflight(run_preflight, tmp_path: Path) -> None:
    extra = _vars(tmp_path)
    del extra["mesh"]
    result = run_preflight(ROLE, extra)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "the variable mesh is not set" in output


def test_a_missing_certificate_names_the_service_and_the_fix(run_preflight, tmp_path: Path) -> None:
    _issue(tmp_path, "web")
    result = run_preflight(ROLE, _vars(tmp_path))
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert f"service db: {tmp_path}/certs/db/cert.pem is missing on localhost" in output
    assert "vmmesh.mesh.certificates" in output


def test_a_check_run_lets_pass_only_the_certificates_a_real_run_issues_first(run_preflight, tmp_path: Path) -> None:
    # the certificates role, run before in check mode, names the directories it would fill (site.yml on fresh hosts)
    _issue(tmp_path, "web")
    due = {"_certificates_check_mode_due": [str(tmp_path / "certs" / "db")]}
    result = run_preflight(ROLE, _vars(tmp_path, **due))
    assert result.returncode == 0, result.stdout + result.stderr
    other = {"_certificates_check_mode_due": [str(tmp_path / "certs" / "web")]}
    result = run_preflight(ROLE, _vars(tmp_path, **other))
    assert result.returncode != 0
    assert f"service db: {tmp_path}/certs/db/cert.pem is missing on localhost" in result.stdout + result.stderr


def test_a_taken_port_names_the_service_and_the_holder(run_preflight, port_held, tmp_path: Path) -> None:
    _issue(tmp_path, "web", "db")
    with port_held(UPSTREAM_PORT):
        result = run_preflight(ROLE, _vars(tmp_path))
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert f"service web: port {UPSTREAM_PORT} (outbound listener for upstream db) is already taken" in output
    assert "pid=" in output


def _with_haproxy_db(tmp_path: Path, **more) -> dict:
    extra_vars = _vars(tmp_path, **more)
    extra_vars["mesh"]["services"]["db"]["sidecar"] = "haproxy"
    return extra_vars


def test_a_service_whose_sidecar_role_is_not_applied_names_the_service_and_the_fix(
    run_preflight, tmp_path: Path
) -> None:
    _issue(tmp_path, "web", "db")
    result = run_preflight(ROLE, _with_haproxy_db(tmp_path))
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert (
        "service db runs on localhost with sidecar haproxy, but vmmesh.mesh.haproxy is not applied to this host "
        "(sidecar roles applied: envoy)" in output
    )
    assert "set the host variable mesh_sidecars: [envoy, haproxy]" in output
    assert "mesh.services.db.sidecar" in output
    # nothing after preflight ran
    assert "Validate each sidecar" not in output


def test_mesh_sidecars_declares_a_role_included_later(run_preflight, tmp_path: Path) -> None:
    _issue(tmp_path, "web", "db")
    result = run_preflight(ROLE, _with_haproxy_db(tmp_path, mesh_sidecars=["envoy", "haproxy"]))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "db: haproxy" in result.stdout


def test_a_bad_mesh_sidecars_names_the_variable(run_preflight, tmp_path: Path) -> None:
    _issue(tmp_path, "web", "db")
    result = run_preflight(ROLE, _vars(tmp_path, mesh_sidecars=["envoy", "nginx"]))
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert 'mesh_sidecars of localhost is ["envoy", "nginx"]' in output
