"""Bad node_exporter variables stop the role in preflight with a message naming the variable."""

from __future__ import annotations

import json

import pytest

ROLE = "node_exporter"


def test_good_variables_pass_preflight(run_preflight) -> None:
    result = run_preflight(
        ROLE,
        {
            "node_exporter_listen_address": "[::1]:9100",
            "node_exporter_tls_enabled": True,
            "node_exporter_tls_cert_file": "/etc/ne/cert.pem",
            "node_exporter_tls_key_file": "/etc/ne/key.pem",
            "node_exporter_tls_client_ca_file": "/etc/ne/ca.pem",
            "node_exporter_tls_client_auth_type": "RequireAndVerifyClientCert",
            "node_exporter_basic_auth_users": {"prometheus": "secret"},
            "node_exporter_enabled_collectors": ["systemd", {"filesystem": {"fs-types-exclude": "^tmpfs$"}}],
        },
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # the checks ran (and nothing past them did)
    assert "Check node_exporter_listen_address" in result.stdout
    assert "Check the TLS settings" in result.stdout
    assert "Install the distribution package" not in result.stdout


@pytest.mark.parametrize(
    ("extra_vars", "expected"),
    [
        pytest.param(
            {"node_exporter_install_method": "tarball"},
            ["node_exporter_install_method", "package", "release", "tarball"],
            id="unknown-install-method",
        ),
        pytest.param(
            {"node_exporter_listen_address": "localhost"},
            ["node_exporter_listen_address", '"localhost"', "host:port"],
            id="listen-address-without-port",
        ),
        pytest.param(
            {"node_exporter_listen_address": "0.0.0.0:70000"},
            ["node_exporter_listen_address", '"0.0.0.0:70000"', "1 to 65535"],
            id="listen-port-out-of-range",
        ),
        pytest.param(
            {"node_exporter_tls_enabled": True},
            ["node_exporter_tls_cert_file", "node_exporter_tls_key_file", "absolute paths"],
            id="tls-without-certificate-paths",
        ),
        pytest.param(
            {
                "node_exporter_tls_enabled": True,
                "node_exporter_tls_cert_file": "/c.pem",
                "node_exporter_tls_key_file": "/k.pem",
                "node_exporter_tls_client_auth_type": "RequireAndVerifyClientCert",
            },
            ["node_exporter_tls_client_ca_file", "RequireAndVerifyClientCert"],
            id="client-verification-without-ca",
        ),
        pytest.param(
            {
                "node_exporter_tls_enabled": True,
                "node_exporter_tls_cert_file": "/c.pem",
                "node_exporter_tls_key_file": "/k.pem",
                "node_exporter_tls_client_ca_file": "/ca.pem",
            },
            ["node_exporter_tls_client_ca_file", "with NoClientCert it must be empty"],
            id="client-ca-without-client-verification",
        ),
        pytest.param(
            {"node_exporter_basic_auth_users": {"prometheus": "secret"}},
            ["node_exporter_basic_auth_users", "node_exporter_tls_enabled: true"],
            id="basic-auth-without-tls",
        ),
        pytest.param(
            {"node_exporter_enabled_collectors": ["System-D"]},
            ["node_exporter_enabled_collectors", '"System-D"'],
            id="malformed-collector",
        ),
        pytest.param(
            {"node_exporter_install_method": "release", "node_exporter_version": "1.9.0"},
            ["node_exporter_release_sha256", "1.9.0"],
            id="release-without-checksum",
        ),
    ],
)
def test_bad_variables_stop_in_preflight(run_preflight, extra_vars: dict, expected: list[str]) -> None:
    result = run_preflight(ROLE, extra_vars)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    for fragment in expected:
        assert fragment in output, f"{fragment!r} missing from:\n{output}"
    # the password must never be printed, even when its check fails
    assert "secret" not in output.replace('"secret"', "") or "basic_auth" not in json.dumps(extra_vars)
