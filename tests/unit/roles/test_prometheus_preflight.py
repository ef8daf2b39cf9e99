"""Bad prometheus variables stop the role in preflight with a message naming the variable."""

from __future__ import annotations

import pytest

ROLE = "prometheus"
MESH = {"name": "shop", "discovery": "static", "metrics": {"expose": True}, "services": {}}
GOOD = {
    "mesh": MESH,
    "prometheus_node_exporter_basic_auth_password": "scrape-secret",
}


def test_good_variables_pass_preflight(run_preflight) -> None:
    result = run_preflight(ROLE, GOOD)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Check that node_exporter scrape credentials are given" in result.stdout
    assert "Install the distribution package" not in result.stdout
    assert "scrape-secret" not in result.stdout


def test_consul_discovery_with_a_release_and_a_token_passes(run_preflight) -> None:
    result = run_preflight(
        ROLE,
        {
            **GOOD,
            "mesh": {**MESH, "discovery": "consul", "metrics": {"expose": False}},
            "prometheus_install_method": "release",
            "prometheus_version": "2.53.2",
            "prometheus_release_sha256": "0" * 64,
            "prometheus_consul_token": "t0ken",
        },
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "t0ken" not in result.stdout


@pytest.mark.parametrize(
    ("extra_vars", "expected"),
    [
        pytest.param(
            {"prometheus_node_exporter_basic_auth_password": ""},
            ["prometheus_node_exporter_basic_auth_password is empty", "prometheus_node_exporter_basic_auth_required"],
            id="missing-scrape-password",
        ),
        pytest.param(
            {"prometheus_node_exporter_scheme": "http"},
            ["prometheus_node_exporter_scheme", '"http"', "never crosses the network in clear"],
            id="password-over-http",
        ),
        pytest.param(
            {"prometheus_node_exporter_tls_cert_file": "/etc/prometheus/tls/client.crt"},
            ["prometheus_node_exporter_tls_key_file", "go together"],
            id="client-certificate-without-key",
        ),
        pytest.param(
            {"mesh": {**MESH, "metrics": {"expose": False}}},
            ["mesh.metrics.expose is false", "prometheus_sidecars_enabled: false"],
            id="sidecar-metrics-not-exposed",
        ),
        pytest.param(
            {"mesh": {**MESH, "discovery": "consul"}},
            ["Debian builds its", "consul_sd_configs", "prometheus_install_method"],
            id="consul-discovery-with-the-debian-package",
        ),
        pytest.param(
            {
                "mesh": {**MESH, "discovery": "consul"},
                "prometheus_install_method": "local",
                "prometheus_local_binary": "/bin/true",
                "prometheus_local_promtool": "/bin/true",
            },
            ["prometheus_consul_token is empty", "consul_sd_configs"],
            id="consul-discovery-without-token",
        ),
        pytest.param(
            {"prometheus_install_method": "release", "prometheus_version": "2.53.2"},
            ["prometheus_release_sha256", "64-hex-digit"],
            id="release-without-checksum",
        ),
        pytest.param(
            {"prometheus_install_method": "tarball"},
            ["prometheus_install_method must be one of", "tarball"],
            id="unknown-install-method",
        ),
        pytest.param(
            {"prometheus_discovery": "dns"},
            ["prometheus_discovery", '"dns"', "static"],
            id="unknown-discovery",
        ),
        pytest.param(
            {"prometheus_scrape_interval": "15"},
            ["prometheus_scrape_interval", '"15"', "duration"],
            id="duration-without-unit",
        ),
        pytest.param(
            {"prometheus_listen_address": "9090"},
            ["prometheus_listen_address", '"9090"', "host:port"],
            id="listen-address-without-host",
        ),
        pytest.param(
            {"prometheus_rule_files": ["/nonexistent/rules.yml"]},
            ["prometheus_rule_files", "/nonexistent/rules.yml"],
            id="missing-rule-file",
        ),
        pytest.param(
            {"mesh": {"services": {}}},
            ["set the `mesh` variable"],
            id="no-mesh",
        ),
    ],
)
def test_bad_variables_stop_preflight(run_preflight, extra_vars: dict, expected: list[str]) -> None:
    result = run_preflight(ROLE, {**GOOD, **extra_vars})
    assert result.returncode != 0
    output = result.stdout + result.stderr
    for text in expected:
        assert text in output, f"{text!r} missing from:\n{output}"
    assert "scrape-secret" not in output
