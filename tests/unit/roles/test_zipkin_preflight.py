"""Bad zipkin variables stop the role in preflight with a message naming the variable."""

from __future__ import annotations

import pytest
from ansible_collections.vmmesh.mesh.tests.unit.ansible_playbook import assert_failed_with

ROLE = "zipkin"


def test_good_variables_pass_preflight(run_preflight) -> None:
    result = run_preflight(
        ROLE,
        {
            "zipkin_install_method": "local",
            "zipkin_local_jar": "/srv/zipkin-server-3.6.1-exec.jar",
            "zipkin_port": 9412,
            "zipkin_java_heap": "1g",
            "zipkin_environment": {"ES_HOSTS": "http://es:9200"},
            "zipkin_storage_type": "elasticsearch",
        },
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Check zipkin_install_method" in result.stdout
    assert "Check zipkin_environment" in result.stdout
    assert "Install the Java runtime" not in result.stdout


def test_the_pinned_release_passes_preflight(run_preflight) -> None:
    result = run_preflight(ROLE, {})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Check the release checksum" in result.stdout


@pytest.mark.parametrize(
    ("extra_vars", "expected"),
    [
        pytest.param({"zipkin_install_method": "docker"}, ["zipkin_install_method", "docker"], id="unknown-method"),
        pytest.param({"zipkin_install_method": "local"}, ["zipkin_local_jar", '""'], id="local-without-jar"),
        pytest.param(
            {"zipkin_version": "3.5.0"}, ["zipkin_release_sha256", "zipkin-server-3.5.0-exec.jar"], id="no-checksum"
        ),
        pytest.param({"zipkin_port": 70000}, ["zipkin_port is 70000", "1 to 65535"], id="port-out-of-range"),
        pytest.param({"zipkin_storage_type": "redis"}, ["zipkin_storage_type", "redis", "mem"], id="storage"),
        pytest.param({"zipkin_java_heap": "lots"}, ["zipkin_java_heap", '"lots"', "512m"], id="heap"),
        pytest.param({"zipkin_environment": {"es_hosts": "x"}}, ["zipkin_environment", "es_hosts"], id="env-name"),
    ],
)
def test_bad_variables_stop_in_preflight(run_preflight, extra_vars: dict, expected: list[str]) -> None:
    assert_failed_with(run_preflight(ROLE, extra_vars), *expected)
