"""Bad consul variables stop the role in preflight, before any host changes, naming the variable."""

from __future__ import annotations

import pytest

ROLE = "consul"
THREE_SERVERS = {"consul_servers": ["localhost", "ghost-1", "ghost-2"]}
GOOD = {
    # TLS files are checked on the host; the controller has none, so TLS is
    # off here except in the tests about it.
    "consul_tls_enabled": False,
    "consul_install_method": "local",
    "consul_local_binary": "/nonexistent/consul",
    "consul_bind_address": "192.0.2.10",
}


def test_good_variables_pass_preflight(run_preflight) -> None:
    result = run_preflight(ROLE, GOOD, THREE_SERVERS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Check the number of servers" in result.stdout
    assert "Install the consul binary" not in result.stdout


def test_a_check_run_lets_pass_the_tls_files_a_real_run_issues_first(run_preflight) -> None:
    # the certificates role, run before in check mode, names the directories it would fill (site.yml on fresh hosts)
    tls = {**GOOD, "consul_tls_enabled": True}
    result = run_preflight(ROLE, {**tls, "_certificates_check_mode_due": ["/etc/vmmesh/certs/consul"]}, THREE_SERVERS)
    assert result.returncode == 0, result.stdout + result.stderr
    result = run_preflight(ROLE, {**tls, "_certificates_check_mode_due": ["/etc/vmmesh/certs/web"]}, THREE_SERVERS)
    assert result.returncode != 0
    assert "lacks /etc/vmmesh/certs/consul/ca-bundle.pem" in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("extra_vars", "groups", "expected"),
    [
        pytest.param(
            {},
            {"consul_servers": ["localhost", "ghost-1"]},
            ["consul_servers_group", "has 2 hosts", "1, 3 or 5"],
            id="two-servers-cannot-keep-quorum",
        ),
        pytest.param({}, {}, ["consul_servers_group", "has 0 hosts"], id="no-servers"),
        pytest.param(
            {"consul_datacenter": "DC 1"},
            THREE_SERVERS,
            ["consul_datacenter", '"DC 1"', "lowercase"],
            id="datacenter-consul-rejects",
        ),
        pytest.param(
            {"consul_install_method": "apt"},
            THREE_SERVERS,
            ["consul_install_method", "apt", "release", "local"],
            id="unknown-install-method",
        ),
        pytest.param(
            {"consul_install_method": "local", "consul_local_binary": ""},
            THREE_SERVERS,
            ["consul_local_binary", '""'],
            id="local-method-without-binary",
        ),
        pytest.param(
            {"consul_tls_enabled": True},
            THREE_SERVERS,
            ["/etc/vmmesh/certs/consul/cert.pem", "vmmesh.mesh.certificates", "consul_tls_enabled: false"],
            id="tls-without-certificates-on-the-host",
        ),
        pytest.param(
            {"consul_tls_enabled": True, "consul_tls_cert_file": "cert.pem"},
            THREE_SERVERS,
            ["consul_tls_cert_file", '"cert.pem"', "absolute paths"],
            id="relative-tls-path",
        ),
        pytest.param(
            {"consul_acl_bootstrap_secret": "not-a-uuid"},
            THREE_SERVERS,
            ["consul_acl_bootstrap_secret", "UUID"],
            id="bootstrap-secret-not-a-uuid",
        ),
        pytest.param(
            {"consul_encrypt_key": "c2hvcnQ="},
            THREE_SERVERS,
            ["consul_encrypt_key", "32 bytes"],
            id="gossip-key-of-the-wrong-size",
        ),
    ],
)
def test_bad_variables_stop_in_preflight(run_preflight, extra_vars: dict, groups: dict, expected: list[str]) -> None:
    result = run_preflight(ROLE, {**GOOD, **extra_vars}, groups)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    for fragment in expected:
        assert fragment in output, f"{fragment!r} missing from:\n{output}"
