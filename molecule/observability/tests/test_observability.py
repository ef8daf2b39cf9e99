"""Prometheus and node_exporter seen from outside: what they serve, what they refuse, what Prometheus sees."""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.parse
from functools import cache
from pathlib import Path

import pytest
import testinfra

EPHEMERAL = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"])
PLAN = json.loads((EPHEMERAL / "plan.json").read_text())
PROMETHEUS = "vmmesh-obs1"
SECURE = "vmmesh-obs2"
TLS_ONLY = "vmmesh-obs3"
HOSTS = [PROMETHEUS, SECURE, TLS_ONLY]
PASSWORD = "lab-only-scrape-password"
SCRAPE = "/root/scrape"
SCRAPE_INTERVAL = 5.0
# node_exporter on every host, the Envoy sidecars of front, web, api and cache, HAProxy on obs3, Prometheus itself.
EXPECTED_TARGETS = {("node", host) for host in HOSTS} | {
    ("vmmesh-sidecars", PROMETHEUS),
    ("vmmesh-sidecars", SECURE),
    ("vmmesh-sidecars", TLS_ONLY),
    ("prometheus", PROMETHEUS),
}
# Targets by instance: two sidecars on obs1 and on obs3.
EXPECTED_TARGET_COUNT = len(EXPECTED_TARGETS) + 2


@cache
def _host(name: str):
    # The lab hosts are local containers: talk to them with podman exec.
    return testinfra.get_host(f"podman://{name}")


def _curl(host, url: str, *args: str) -> tuple[int, str, str]:
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


def _query(expr: str) -> list[dict]:
    """An instant query against Prometheus' HTTP API on obs1."""
    out = _host(PROMETHEUS).check_output(
        f"curl -sf -m 5 'http://127.0.0.1:9090/api/v1/query?query={urllib.parse.quote(expr)}'"
    )
    answer = json.loads(out)
    assert answer["status"] == "success", answer
    return answer["data"]["result"]


def _values(expr: str, *labels: str) -> dict[tuple, float]:
    return {tuple(r["metric"].get(label, "") for label in labels): float(r["value"][1]) for r in _query(expr)}


def _wait(predicate, timeout: float, step: float = 0.5):
    """Poll `predicate` until it returns something true; return (value, seconds waited)."""
    start = time.monotonic()
    while True:
        value = predicate()
        elapsed = time.monotonic() - start
        if value or elapsed > timeout:
            return value, elapsed
        time.sleep(step)


def _values_up() -> dict[tuple[str, str], str]:
    # Only series scraped in the last three intervals: the package's first start runs its default configuration for
    # a moment, and the series it made stay visible for Prometheus' five-minute lookback.
    fresh = f"up and (time() - timestamp(up) < {3 * SCRAPE_INTERVAL})"
    return {(job, host): "up" if value == 1 else "down" for (job, host), value in _values(fresh, "job", "host").items()}


# ---------------------------------------------------------------------------------------------------------------------
# node_exporter, seen from the Prometheus host


def test_secure_exporter_serves_metrics_to_a_client_with_certificate_and_password() -> None:
    code, status, body = _curl(
        _host(PROMETHEUS), f"https://{SECURE}:9100/metrics", *_client_tls(), f"--user prometheus:{PASSWORD}"
    )
    assert (code, status) == (0, "200")
    assert "node_cpu_seconds_total" in body
    # the extra collector is on, the disabled one is off
    assert 'node_scrape_collector_success{collector="systemd"} 1' in body
    assert 'collector="wifi"' not in body


def test_plain_http_to_the_secure_exporter_gets_no_metrics() -> None:
    _code, status, body = _curl(_host(PROMETHEUS), f"http://{SECURE}:9100/metrics")
    assert status == "400", "a plain HTTP request to the TLS port must be refused"
    assert "node_cpu_seconds_total" not in body


def test_missing_credentials_are_refused() -> None:
    code, status, body = _curl(_host(PROMETHEUS), f"https://{SECURE}:9100/metrics", *_client_tls())
    assert (code, status) == (0, "401")
    assert "node_cpu_seconds_total" not in body


def test_wrong_password_is_refused() -> None:
    code, status, _body = _curl(
        _host(PROMETHEUS), f"https://{SECURE}:9100/metrics", *_client_tls(), "--user prometheus:not-the-password"
    )
    assert (code, status) == (0, "401")


def test_missing_client_certificate_is_refused() -> None:
    code, status, body = _curl(
        _host(PROMETHEUS),
        f"https://{SECURE}:9100/metrics",
        f"--cacert {SCRAPE}/ca.crt",
        f"--user prometheus:{PASSWORD}",
    )
    assert code != 0 and status == "000", "the TLS handshake must fail without a client certificate"
    assert body == ""


def test_client_certificate_from_a_foreign_ca_is_refused() -> None:
    code, status, _body = _curl(
        _host(PROMETHEUS),
        f"https://{SECURE}:9100/metrics",
        *_client_tls("foreign-client"),
        f"--user prometheus:{PASSWORD}",
    )
    assert code != 0 and status == "000"


def test_tls_only_exporter_needs_neither_certificate_nor_password() -> None:
    code, status, body = _curl(_host(PROMETHEUS), f"https://{TLS_ONLY}:9100/metrics", f"--cacert {SCRAPE}/ca.crt")
    assert (code, status) == (0, "200")
    assert "node_cpu_seconds_total" in body


def test_textfile_collector_publishes_files_from_its_directory() -> None:
    host = _host(TLS_ONLY)
    host.run_expect([0], "echo 'vmmesh_textfile_probe 42' > /var/lib/node_exporter/textfile/probe.prom")
    try:
        _code, status, body = _curl(host, "https://127.0.0.1:9100/metrics", "--insecure")
        assert status == "200"
        assert "vmmesh_textfile_probe 42" in body
    finally:
        host.run("rm -f /var/lib/node_exporter/textfile/probe.prom")


def test_every_certificate_shows_its_days_left_in_prometheus() -> None:
    """The certificates role's textfile, through node_exporter and the recording rule, per host and service."""
    placed = {
        (instance["host"], name) for name, service in PLAN["services"].items() for instance in service["instances"]
    }
    found, _waited = _wait(lambda: _values("vmmesh:certificate_days_left", "host", "service"), 4 * SCRAPE_INTERVAL)
    assert set(found) == placed
    for (host, service), days_left in found.items():
        not_after = _host(host).check_output(f"openssl x509 -noout -enddate -in /etc/vmmesh/certs/{service}/cert.pem")
        expires = _host(host).check_output(f"date -d '{not_after.split('=', 1)[1]}' +%s")
        assert abs(days_left - (int(expires) - time.time()) / 86400) < 0.01, (host, service, days_left)

    # The scenario's certificates live two days (prepare.yml): the expiry alerts fire, each for every certificate.
    def firing(alert: str) -> set[tuple]:
        return set(_values(f'ALERTS{{alertname="{alert}",alertstate="firing"}}', "host", "service"))

    soon, _waited = _wait(lambda: firing("VmmeshCertificateExpiresSoon") == placed, 4 * SCRAPE_INTERVAL)
    assert soon, firing("VmmeshCertificateExpiresSoon")
    assert firing("VmmeshCertificateExpiresVerySoon") == {key for key, days in found.items() if days < 2}


@pytest.mark.parametrize("name", HOSTS)
def test_exporter_runs_as_its_own_user_from_the_role_unit(name: str) -> None:
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


def test_web_config_holds_only_bcrypt_hashes() -> None:
    host = _host(SECURE)
    config = host.file("/etc/node_exporter/web-config.yml")
    assert (config.user, config.group, config.mode) == ("root", "node-exp", 0o640)
    assert PASSWORD not in config.content_string
    assert '"prometheus": "$2b$10$' in config.content_string
    assert "RequireAndVerifyClientCert" in config.content_string
    directory = host.file("/etc/node_exporter")
    assert (directory.user, directory.group, directory.mode) == ("root", "node-exp", 0o750)


def test_tls_only_web_config_has_no_users() -> None:
    config = _host(TLS_ONLY).file("/etc/node_exporter/web-config.yml").content_string
    assert "NoClientCert" in config
    assert "basic_auth_users" not in config
    textfile = _host(TLS_ONLY).file("/var/lib/node_exporter/textfile")
    assert (textfile.user, textfile.group, textfile.mode) == ("root", "node-exp", 0o755)


# ---------------------------------------------------------------------------------------------------------------------
# Prometheus on the host


def test_prometheus_runs_from_the_package_unit_hardened() -> None:
    host = _host(PROMETHEUS)
    assert host.service("prometheus").is_running and host.service("prometheus").is_enabled
    pid = host.check_output("systemctl show -p MainPID --value prometheus")
    assert host.check_output(f"ps -o user= -p {pid}") == "prometheus"
    shown = host.check_output("systemctl show -p NoNewPrivileges,ProtectSystem,PrivateTmp prometheus").split()
    assert sorted(shown) == ["NoNewPrivileges=yes", "PrivateTmp=yes", "ProtectSystem=strict"]
    assert "--config.file=/etc/prometheus/prometheus.yml" in host.check_output(f"ps -o args= -p {pid}")


def test_secrets_are_files_only_prometheus_reads() -> None:
    host = _host(PROMETHEUS)
    config = host.file("/etc/prometheus/prometheus.yml")
    assert (config.user, config.group, config.mode) == ("root", "prometheus", 0o640)
    assert PASSWORD not in config.content_string
    secret = host.file("/etc/prometheus/secrets/node_exporter_password")
    assert (secret.user, secret.group, secret.mode) == ("root", "prometheus", 0o640)
    assert secret.content_string == PASSWORD
    assert config.content_string.startswith("#")  # ansible_managed


def test_static_targets_come_from_the_planner_and_the_inventory() -> None:
    host = _host(PROMETHEUS)
    sidecars = json.loads(host.file("/etc/prometheus/vmmesh_sd/sidecars.json").content_string)
    found = {(group["labels"]["host"], group["labels"]["sidecar"], group["labels"]["service"]) for group in sidecars}
    assert found == {
        (PROMETHEUS, "envoy", "front"),
        (PROMETHEUS, "envoy", "web"),
        (SECURE, "envoy", "api"),
        (TLS_ONLY, "haproxy", "legacy"),
        (TLS_ONLY, "envoy", "cache"),
    }
    for group in sidecars:
        address = PLAN["hosts"][group["labels"]["host"]]["address"]
        assert group["targets"][0].startswith(address + ":"), "the sidecars are scraped at their mesh address"
    nodes = json.loads(host.file("/etc/prometheus/vmmesh_sd/node.json").content_string)
    assert sorted(group["targets"][0] for group in nodes) == sorted(f"{h}:9100" for h in HOSTS)


def test_every_target_is_up_within_two_scrape_intervals_of_a_start() -> None:
    """Timed by Prometheus' own sample timestamps, not by this test's polling (a loaded host answers it slowly)."""
    host = _host(PROMETHEUS)
    host.run_expect([0], "systemctl restart prometheus")
    ready, _waited = _wait(lambda: host.run("curl -sf -m 2 http://127.0.0.1:9090/-/ready").rc == 0, 30)
    assert ready
    started = float(host.check_output("date +%s.%N"))

    def fresh() -> bool:
        # only samples scraped by the new process count (the old ones stay visible for the lookback window)
        series = _query(f"up and timestamp(up) > {started}")
        return len(series) == EXPECTED_TARGET_COUNT and all(float(found["value"][1]) == 1 for found in series)

    every_one_up, _waited = _wait(fresh, 8 * SCRAPE_INTERVAL, 0.5)
    assert every_one_up, _values_up()
    # The first sample with up == 1 of every target scraped by the new process.
    (process_start,) = _values('process_start_time_seconds{job="prometheus"}').values()
    first_up = {}
    for series in _query("up[2m]"):
        key = (series["metric"]["job"], series["metric"].get("host", ""), series["metric"]["instance"])
        times = [float(at) for at, value in series["values"] if float(at) >= process_start and value == "1"]
        if times:
            first_up[key] = min(times)
    assert {(job, name) for job, name, _instance in first_up} == EXPECTED_TARGETS, first_up
    assert len(first_up) == EXPECTED_TARGET_COUNT, first_up
    elapsed = max(0.0, max(first_up.values()) - started)
    print(f"all {len(first_up)} targets up {elapsed:.1f}s after Prometheus was ready (its own sample timestamps)")
    assert elapsed <= 2 * SCRAPE_INTERVAL


def test_a_stopped_exporter_turns_only_its_own_target_down() -> None:
    _wait(lambda: set(_values_up().values()) == {"up"}, 3 * SCRAPE_INTERVAL)
    _host(TLS_ONLY).run_expect([0], "systemctl stop node_exporter")
    try:
        down, elapsed = _wait(lambda: _values_up().get(("node", TLS_ONLY)) == "down", 3 * SCRAPE_INTERVAL)
        print(f"node_exporter on {TLS_ONLY} seen down {elapsed:.1f}s after it stopped")
        assert down
        assert elapsed <= 2 * SCRAPE_INTERVAL
        assert {key: value for key, value in _values_up().items() if value == "down"} == {("node", TLS_ONLY): "down"}
    finally:
        _host(TLS_ONLY).run_expect([0], "systemctl start node_exporter")
    back, _waited = _wait(lambda: _values_up().get(("node", TLS_ONLY)) == "up", 3 * SCRAPE_INTERVAL)
    assert back


def test_the_reload_kept_the_process_and_applied_the_change() -> None:
    host = _host(PROMETHEUS)
    pids = json.loads(host.file("/root/reload.json").content_string)
    assert pids["before"] == pids["after"] and pids["before"] != "0", "the configuration change restarted Prometheus"
    config = json.loads(host.check_output("curl -sf -m 5 http://127.0.0.1:9090/api/v1/status/config"))
    assert "lab: side-effect" in config["data"]["yaml"]


def test_a_rule_file_promtool_rejects_stops_the_play_before_it_goes_live() -> None:
    host = _host(PROMETHEUS)
    outcome = json.loads(host.file("/root/rejected.json").content_string)
    assert outcome["rejected"] is True
    assert outcome["task"] == "Install the extra rule files, checked by promtool"
    assert "failed to validate" in outcome["message"]
    # the play names the file and shows promtool's error
    assert outcome["item"] == "broken-rules.yml"
    assert "FAILED" in outcome["output"] and "unclosed left parenthesis" in outcome["output"]
    assert not host.file("/etc/prometheus/rules/broken-rules.yml").exists
    # the change that came with it did not go live either
    assert "lab: rejected" not in host.file("/etc/prometheus/prometheus.yml").content_string
    rules = json.loads(host.check_output("curl -sf -m 5 http://127.0.0.1:9090/api/v1/rules"))
    groups = sorted(group["name"] for group in rules["data"]["groups"])
    assert groups == ["vmmesh-consul", "vmmesh-edges", "vmmesh-hosts"]


# ---------------------------------------------------------------------------------------------------------------------
# Traffic through the mesh, seen by Prometheus


EDGES = [
    # (caller host, local port, source, destination, the counter Prometheus stores for that edge)
    (PROMETHEUS, 9101, "front", "api", 'envoy_http_downstream_rq_xx{service="front",destination="api"}'),
    (PROMETHEUS, 9102, "front", "legacy", 'envoy_http_downstream_rq_xx{service="front",destination="legacy"}'),
    (TLS_ONLY, 9201, "legacy", "api", 'haproxy_frontend_http_responses_total{proxy="out.legacy.api"}'),
]


def _total(counter: str) -> float:
    return sum(float(r["value"][1]) for r in _query(f"sum({counter})"))


@pytest.mark.parametrize(
    ("host", "port", "source", "destination", "counter"), EDGES, ids=[f"{e[2]}-{e[3]}" for e in EDGES]
)
def test_requests_through_the_mesh_show_in_the_edge_metrics(
    host: str, port: int, source: str, destination: str, counter: str
) -> None:
    requests = 40
    # wait for a scrape with no request in flight, then send a known number of requests
    before = _total(counter)
    out = _host(host).check_output(
        f"for i in $(seq {requests}); do"
        f" curl -s -m 5 -o /dev/null -w '%{{http_code}}\\n' http://127.0.0.1:{port}/edge; done"
    )
    assert out.split() == ["200"] * requests
    after, _elapsed = _wait(lambda: (v := _total(counter)) >= before + requests and v, 3 * SCRAPE_INTERVAL)
    assert after == before + requests, f"{source} -> {destination}: {before} then {after}"
    rate, _waited = _wait(
        lambda: _values(
            f'vmmesh:edge_requests:rate1m{{source="{source}",destination="{destination}",code_class="2xx"}} > 0',
            "source",
        ),
        4 * SCRAPE_INTERVAL,
    )
    assert rate and rate[(source,)] > 0


def test_a_burst_of_5xx_fires_the_error_ratio_alert() -> None:
    host = _host(PROMETHEUS)
    # 5 requests a second answered 503 by api, for up to two minutes (stopped below).
    host.run_expect(
        [0],
        "systemd-run --unit vmmesh-burst /bin/sh -c "
        "'for i in $(seq 1200); do curl -s -m 2 -o /dev/null http://127.0.0.1:9101/status/503; sleep 0.1; done'",
    )
    try:
        firing, elapsed = _wait(
            lambda: _values(
                'ALERTS{alertname="VmmeshEdgeErrorRatioHigh",alertstate="firing"}', "source", "destination", "sidecar"
            ),
            120,
            1,
        )
        print(f"VmmeshEdgeErrorRatioHigh firing {elapsed:.0f}s after the burst started")
        assert firing == {("front", "api", "envoy"): 1.0}
        ratio = _values('vmmesh:edge_error_ratio:rate1m{source="front",destination="api"}', "source")
        assert ratio[("front",)] > 0.05
    finally:
        host.run("systemctl stop vmmesh-burst")


def test_every_metric_the_dashboards_rely_on_is_produced() -> None:
    listed = {
        line.strip()
        for line in (Path(__file__).parents[1] / "metrics-seen.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    live = set(
        json.loads(_host(PROMETHEUS).check_output("curl -sf -m 5 http://127.0.0.1:9090/api/v1/label/__name__/values"))[
            "data"
        ]
    )
    assert listed - live == set()
    # and the per-edge recording rules have data
    for record in (
        "vmmesh:edge_requests:rate1m",
        "vmmesh:edge_error_ratio:rate1m",
        "vmmesh:edge_latency_seconds:p99_1m",
    ):
        assert record in live, record


# ---------------------------------------------------------------------------------------------------------------------
# playbooks/report.yml on the live mesh, right after the burst above


def test_the_report_shows_the_failing_edge() -> None:
    report_dir = EPHEMERAL / "report"
    project = Path(os.environ["MOLECULE_PROJECT_DIRECTORY"])
    result = subprocess.run(
        [
            "ansible-playbook",
            "--inventory",
            os.environ["MOLECULE_INVENTORY_FILE"],
            "--extra-vars",
            json.dumps({"report_dir": str(report_dir)}),
            str(project / "playbooks" / "report.yml"),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads((report_dir / "report.json").read_text())
    edges = {(edge["source"], edge["destination"]): edge for edge in report["edges"]}
    assert set(edges) == {("front", "api"), ("front", "legacy"), ("legacy", "api"), ("web", "api"), ("api", "cache")}
    assert edges[("front", "api")]["health"] == "failing"
    assert edges[("front", "api")]["error_ratio"] > 0.05
    assert all(target["up"] for target in report["targets"]) and len(report["targets"]) == EXPECTED_TARGET_COUNT
    markdown = (report_dir / "report.md").read_text()
    assert "| front | api |" in markdown and "failing" in markdown
    assert "[search](http://" in markdown, "traced edges link to their trace search (checked in test_tracing.py)"
    svg = (report_dir / "topology.svg").read_text()
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg
    assert "#c62828" in svg, "the failing edge is drawn red"
