"""node_exporter seen from the other lab host: what gets through and what is refused."""

from __future__ import annotations

import pytest
import testinfra

SECURE = "vmmesh-ne-secure"
PLAIN = "vmmesh-ne-plain"
PASSWORD = "lab-only-scrape-password"
SECURE_URL = f"https://{SECURE}:9100/metrics"
SCRAPE = "/root/scrape"


def _host(name: str):
    # The lab hosts are local containers: talk to them with podman exec.
    return testinfra.get_host(f"podman://{name}")


@pytest.fixture(scope="module")
def secure():
    return _host(SECURE)


@pytest.fixture(scope="module")
def plain():
    return _host(PLAIN)


def _curl(host, url: str, *args: str):
    """Run curl on `host`; return (exit code, HTTP status, body)."""
    cmd = host.run(
        "curl --silent --show-error --max-time 5 --output /tmp/body --write-out '%{http_code}' "
        + " ".join(args)
        + f' {url}; echo " $?"'
    )
    status, code = cmd.stdout.rsplit(" ", 1)
    body = host.file("/tmp/body").content_string if host.file("/tmp/body").exists else ""
    host.run("rm -f /tmp/body")
    return int(code), status.strip(), body


def _client_tls(name: str = "client") -> list[str]:
    return [f"--cacert {SCRAPE}/ca.crt", f"--cert {SCRAPE}/{name}.crt", f"--key {SCRAPE}/{name}.key"]


def test_secure_exporter_serves_metrics_to_a_client_with_certificate_and_password(plain) -> None:
    code, status, body = _curl(plain, SECURE_URL, *_client_tls(), f"--user prometheus:{PASSWORD}")
    assert (code, status) == (0, "200")
    assert "node_cpu_seconds_total" in body
    # the extra collector is on, the disabled one is off
    assert 'node_scrape_collector_success{collector="systemd"} 1' in body
    assert 'collector="wifi"' not in body


def test_plain_http_to_the_secure_exporter_gets_no_metrics(plain) -> None:
    _code, status, body = _curl(plain, f"http://{SECURE}:9100/metrics")
    assert status == "400", "a plain HTTP request to the TLS port must be refused"
    assert "node_cpu_seconds_total" not in body


def test_missing_credentials_are_refused(plain) -> None:
    code, status, body = _curl(plain, SECURE_URL, *_client_tls())
    assert (code, status) == (0, "401")
    assert "node_cpu_seconds_total" not in body


def test_wrong_password_is_refused(plain) -> None:
    code, status, _body = _curl(plain, SECURE_URL, *_client_tls(), "--user prometheus:not-the-password")
    assert (code, status) == (0, "401")


def test_missing_client_certificate_is_refused(plain) -> None:
    code, status, body = _curl(plain, SECURE_URL, f"--cacert {SCRAPE}/ca.crt", f"--user prometheus:{PASSWORD}")
    assert code != 0 and status == "000", "the TLS handshake must fail without a client certificate"
    assert body == ""


def test_client_certificate_from_a_foreign_ca_is_refused(plain) -> None:
    code, status, _body = _curl(plain, SECURE_URL, *_client_tls("foreign-client"), f"--user prometheus:{PASSWORD}")
    assert code != 0 and status == "000"


def test_plain_exporter_is_scraped_over_the_network(secure) -> None:
    code, status, body = _curl(secure, f"http://{PLAIN}:9100/metrics")
    assert (code, status) == (0, "200")
    assert "node_cpu_seconds_total" in body


def test_textfile_collector_publishes_files_from_its_directory(plain) -> None:
    plain.run_expect([0], "echo 'vmmesh_textfile_probe 42' > /var/lib/node_exporter/textfile/probe.prom")
    try:
        _code, status, body = _curl(plain, "http://127.0.0.1:9100/metrics")
        assert status == "200"
        assert "vmmesh_textfile_probe 42" in body
    finally:
        plain.run("rm -f /var/lib/node_exporter/textfile/probe.prom")


@pytest.mark.parametrize("name", [SECURE, PLAIN])
def test_runs_as_its_own_user_from_the_role_unit(name: str) -> None:
    host = _host(name)
    service = host.service("node_exporter")
    assert service.is_running and service.is_enabled
    assert host.user("node-exp").shell == "/usr/sbin/nologin"
    exporters = [p for p in host.process.filter(user="node-exp") if "prometheus-node-exporter" in p.args]
    assert len(exporters) == 1, "one exporter, running as node-exp"
    assert not [p for p in host.process.filter(user="root") if "node-exporter" in p.args]
    # the distribution's own unit is masked so it never competes for the port
    assert host.file("/etc/systemd/system/prometheus-node-exporter.service").linked_to == "/dev/null"
    unit = host.file("/etc/systemd/system/node_exporter.service")
    assert (unit.user, unit.group, unit.mode) == ("root", "root", 0o644)
    assert "NoNewPrivileges=yes" in unit.content_string


def test_web_config_holds_only_bcrypt_hashes(secure) -> None:
    config = secure.file("/etc/node_exporter/web-config.yml")
    assert (config.user, config.group, config.mode) == ("root", "node-exp", 0o640)
    assert PASSWORD not in config.content_string
    assert '"prometheus": "$2b$10$' in config.content_string
    assert "RequireAndVerifyClientCert" in config.content_string
    directory = secure.file("/etc/node_exporter")
    assert (directory.user, directory.group, directory.mode) == ("root", "node-exp", 0o750)


def test_plain_host_has_no_web_config(plain) -> None:
    assert not plain.file("/etc/node_exporter/web-config.yml").exists
    textfile = plain.file("/var/lib/node_exporter/textfile")
    assert (textfile.user, textfile.group, textfile.mode) == ("root", "node-exp", 0o755)
