"""The Consul cluster seen from its hosts: formed, encrypted, locked down, and steady through restarts."""

from __future__ import annotations

import datetime
import json
import os
import re
import uuid
from pathlib import Path

import pytest
import testinfra
from cryptography import x509

SERVERS = ["vmmesh-cs1", "vmmesh-cs2", "vmmesh-cs3"]
CLIENT = "vmmesh-cc1"
SECRETS = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "secrets" / "dc1"
# Ansible's to_uuid: uuid5 in Ansible's namespace.
ANSIBLE_NAMESPACE = uuid.UUID("361E6D51-FAEC-444A-9079-341386DA8E2E")
# Consul's default raft timing (raft_multiplier 5): election timeout 5 s.
ELECTION_TIMEOUT_S = 5.0


def _host(name: str):
    return testinfra.get_host(f"podman://{name}")


@pytest.fixture(scope="module")
def bootstrap_secret() -> str:
    seed = (SECRETS / "acl-bootstrap-seed").read_text().strip()
    return str(uuid.uuid5(ANSIBLE_NAMESPACE, seed))


def _api(host, path: str, *, token: str = "", method: str = "GET", data: str = "") -> tuple[int, str]:
    args = [f"-X {method}", "-o /tmp/api-body", "-w '%{http_code}'"]
    if token:
        args.append(f"-H 'X-Consul-Token: {token}'")
    if data:
        args.append(f"--data '{data}'")
    status = host.check_output(f"curl -s {' '.join(args)} http://127.0.0.1:8500{path}")
    return int(status), host.file("/tmp/api-body").content_string


@pytest.mark.parametrize("name", SERVERS)
def test_every_server_sees_one_leader_and_three_peers(name: str) -> None:
    host = _host(name)
    _status, leader = _api(host, "/v1/status/leader")
    _status, peers = _api(host, "/v1/status/peers")
    assert json.loads(leader).endswith(":8300")
    assert len(json.loads(peers)) == 3


def test_all_four_agents_are_alive_members(bootstrap_secret: str) -> None:
    status, body = _api(_host(CLIENT), "/v1/agent/members", token=bootstrap_secret)
    assert status == 200
    alive = sorted(m["Name"] for m in json.loads(body) if m["Status"] == 1)
    assert alive == sorted([*SERVERS, CLIENT])


def test_agents_registered_their_nodes_with_their_own_tokens(bootstrap_secret: str) -> None:
    status, body = _api(_host(CLIENT), "/v1/catalog/nodes", token=bootstrap_secret)
    assert status == 200
    assert sorted(n["Node"] for n in json.loads(body)) == sorted([*SERVERS, CLIENT])


def test_anonymous_requests_cannot_write_or_read_protected_data(bootstrap_secret: str) -> None:
    client = _host(CLIENT)
    assert _api(client, "/v1/kv/vmmesh-probe", method="PUT", data="x")[0] == 403
    assert _api(client, "/v1/acl/tokens")[0] == 403
    assert _api(client, "/v1/agent/self")[0] == 403
    # the same requests with the bootstrap token succeed: the 403s come from ACLs
    assert _api(client, "/v1/kv/vmmesh-probe", method="PUT", data="x", token=bootstrap_secret) == (200, "true")
    assert _api(client, "/v1/kv/vmmesh-probe", token="")[0] == 403
    assert _api(client, "/v1/kv/vmmesh-probe", method="DELETE", token=bootstrap_secret)[0] == 200


def test_dns_answers_with_the_default_token() -> None:
    answer = _host(CLIENT).check_output("dig +short @127.0.0.1 -p 8600 consul.service.dc1.consul")
    assert sorted(answer.split()) == sorted(
        _host(name).check_output("ip -4 -o addr show eth0 | awk '{print $4}' | cut -d/ -f1") for name in SERVERS
    )


def test_https_api_requires_a_client_certificate() -> None:
    client = _host(CLIENT)
    certs = "/etc/vmmesh/certs/consul"
    without = client.run(f"curl -s -o /dev/null --cacert {certs}/ca-bundle.pem https://127.0.0.1:8501/v1/status/leader")
    assert without.rc != 0, "the TLS handshake must fail without a client certificate"
    with_cert = client.run(
        f"curl -s --cacert {certs}/ca-bundle.pem --cert {certs}/cert.pem --key {certs}/key.pem "
        "https://127.0.0.1:8501/v1/status/leader"
    )
    assert with_cert.rc == 0 and with_cert.stdout.strip().endswith(':8300"')


def test_plain_http_api_is_on_loopback_only() -> None:
    client = _host(CLIENT)
    address = client.check_output("ip -4 -o addr show eth0 | awk '{print $4}' | cut -d/ -f1")
    assert client.run(f"curl -s -m 2 http://{address}:8500/v1/status/leader").rc != 0


def test_an_agent_without_the_gossip_key_cannot_join(bootstrap_secret: str) -> None:
    client = _host(CLIENT)
    server_address = _host(SERVERS[0]).check_output("ip -4 -o addr show eth0 | awk '{print $4}' | cut -d/ -f1")
    client.run("rm -rf /tmp/rogue && mkdir -p /tmp/rogue")
    client.run(
        "nohup /usr/local/bin/consul agent -node rogue -data-dir /tmp/rogue -bind 0.0.0.0 "
        "-serf-lan-port 18301 -server-port 18300 -http-port 18500 -dns-port -1 -grpc-port -1 "
        f"-retry-join {server_address} >/tmp/rogue/log 2>&1 & echo $! > /tmp/rogue/pid"
    )
    try:
        client.run("sleep 8")
        _status, body = _api(client, "/v1/agent/members", token=bootstrap_secret)
        assert "rogue" not in [m["Name"] for m in json.loads(body)]
        rogue_view = client.run("curl -s http://127.0.0.1:18500/v1/agent/members").stdout
        assert all(name not in rogue_view for name in SERVERS)
    finally:
        client.run("kill $(cat /tmp/rogue/pid)")


def test_secrets_stay_out_of_readable_files() -> None:
    for name in [*SERVERS, CLIENT]:
        host = _host(name)
        for path in ("/etc/consul.d/encrypt.json", "/etc/consul.d/acl-tokens.json", "/etc/consul.d/consul.json"):
            config = host.file(path)
            assert (config.user, config.group, config.mode) == ("root", "consul", 0o640), path
        assert "encrypt" not in host.file("/etc/consul.d/consul.json").content_string


def test_servers_run_as_consul_under_a_hardened_unit() -> None:
    for name in SERVERS:
        host = _host(name)
        assert host.service("consul").is_running
        processes = [p for p in host.process.filter(user="consul") if "consul agent" in p.args]
        assert len(processes) == 1
        assert "ProtectSystem=strict" in host.file("/etc/systemd/system/consul.service").content_string


def test_rolling_restart_kept_a_leader_within_the_election_timeout() -> None:
    """side_effect restarted every server (log level change) while the client read the leader every 100 ms."""
    for name in SERVERS:
        log = _host(name).check_output(
            "journalctl -u consul --no-pager -o cat | grep -c 'agent: Consul agent running!'"
        )
        assert int(log) >= 2, f"{name} was not restarted by the log level change"
    reads = _host(CLIENT).file("/root/leader-reads.log").content_string.splitlines()
    assert len(reads) > 50, "the read load did not run"
    gap_start, longest_gap, failed = None, 0.0, 0
    for line in reads:
        stamp, _sep, answer = line.partition(" ")
        ok = answer.startswith('"') and answer.endswith(':8300"')
        failed += not ok
        if not ok and gap_start is None:
            gap_start = float(stamp)
        elif ok and gap_start is not None:
            longest_gap = max(longest_gap, float(stamp) - gap_start)
            gap_start = None
    print(f"leader reads: {len(reads)}, without a leader: {failed}, longest gap: {longest_gap:.2f} s")
    assert gap_start is None, "the cluster ended without a leader"
    assert longest_gap < ELECTION_TIMEOUT_S


# --------------------------------------------------------------------------------------------------------------------
# The mesh's registrations and live discovery
# --------------------------------------------------------------------------------------------------------------------

PLAN = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "plan.json"
FAILOVER_BUDGET_S = 10.0


@pytest.fixture(scope="module")
def plan() -> dict:
    return json.loads(PLAN.read_text())


def _json(host, path: str, token: str) -> object:
    status, body = _api(host, path, token=token)
    assert status == 200, f"{path}: HTTP {status} {body}"
    return json.loads(body)


def test_every_model_service_is_in_the_catalog_with_passing_checks(plan: dict, bootstrap_secret: str) -> None:
    client = _host(CLIENT)
    for name, service in plan["services"].items():
        entries = _json(client, f"/v1/health/service/{name}", bootstrap_secret)
        hosts = sorted(entry["Node"]["Node"] for entry in entries)
        assert hosts == sorted(i["host"] for i in service["instances"]), name
        for entry in entries:
            checks = {check["CheckID"]: check["Status"] for check in entry["Checks"]}
            assert checks == {"serfHealth": "passing", f"{name}-app": "passing", f"{name}-sidecar": "passing"}
            registered = entry["Service"]
            assert registered["Port"] == service["inbound_port"]
            assert registered["Meta"]["vmmesh_mesh"] == "lab"
            assert registered["Meta"]["vmmesh_sidecar"] == "envoy"
            assert "vmmesh" in registered["Tags"]


def test_metrics_endpoints_are_registered_for_prometheus(plan: dict, bootstrap_secret: str) -> None:
    client = _host(CLIENT)
    envoys = _json(client, "/v1/catalog/service/vmmesh-envoy-metrics?tag=vmmesh-metrics", bootstrap_secret)
    expected = sorted(
        (f"vmmesh-envoy-metrics-{name}", i["host"], i["metrics_port"], name)
        for name, service in plan["services"].items()
        for i in service["instances"]
    )
    assert (
        sorted((e["ServiceID"], e["Node"], e["ServicePort"], e["ServiceMeta"]["vmmesh_service"]) for e in envoys)
        == expected
    )
    for entry in envoys:
        assert entry["ServiceAddress"] == plan["hosts"][entry["Node"]]["address"]
        meta = entry["ServiceMeta"]
        assert (meta["vmmesh_mesh"], meta["vmmesh_sidecar"], meta["metrics_scheme"]) == ("lab", "envoy", "http")
        assert meta["metrics_path"] == "/metrics"
        # The registered endpoint answers Prometheus' scrape from another host.
        scrape = _host(SERVERS[0]).check_output(
            f"curl -sf -m 5 http://{entry['ServiceAddress']}:{entry['ServicePort']}{meta['metrics_path']}"
        )
        assert "envoy_server_live" in scrape
    exporters = _json(client, "/v1/catalog/service/node-exporter?tag=vmmesh-metrics", bootstrap_secret)
    assert sorted(e["Node"] for e in exporters) == sorted([*SERVERS, CLIENT])
    assert all(e["ServicePort"] == 9100 and e["ServiceMeta"]["metrics_scheme"] == "http" for e in exporters)


def _uuid(seed: str) -> str:
    return str(uuid.uuid5(ANSIBLE_NAMESPACE, seed))


def test_each_service_has_a_token_that_writes_only_itself(bootstrap_secret: str) -> None:
    client = _host(CLIENT)
    token = _json(client, f"/v1/acl/token/{_uuid(bootstrap_secret + ':service-accessor:api')}", bootstrap_secret)
    assert [p["Name"] for p in token["Policies"]] == ["vmmesh-service-api"]
    api_token = _uuid(bootstrap_secret + ":service-secret:api")
    body = '{"Name": "web", "ID": "web-impostor", "Port": 1}'
    assert _api(client, "/v1/agent/service/register", token=api_token, method="PUT", data=body)[0] == 403
    web_policy = _json(client, "/v1/acl/policy/name/vmmesh-service-web", bootstrap_secret)
    assert 'service "web" { policy = "write" }' in web_policy["Rules"]
    assert 'service "api" { policy = "read" }' in web_policy["Rules"]


def test_the_module_four_steps_against_the_agent(bootstrap_secret: str) -> None:
    """side_effect: check, run, check, run with one definition, then the same mesh without it."""
    steps = json.loads(_host(CLIENT).file("/root/probe-steps.json").content_string)
    assert steps == [True, True, False, False, True]
    assert "probe" not in _json(_host(CLIENT), "/v1/catalog/services", bootstrap_secret)


def test_a_service_removed_from_the_model_is_deregistered(bootstrap_secret: str) -> None:
    client = _host(CLIENT)
    before = json.loads(client.file("/root/catalog-with-scratch.json").content_string)
    assert "scratch" in before
    assert "scratch" not in _json(client, "/v1/catalog/services", bootstrap_secret)


def _timed(text: str) -> list[tuple[float, str]]:
    lines = []
    for line in text.splitlines():
        stamp, _sep, rest = line.partition(" ")
        lines.append((float(stamp), rest.strip()))
    return lines


def _first(lines: list[tuple[float, str]], after: float, predicate) -> float:
    return next((stamp for stamp, rest in lines if stamp > after and predicate(rest)), float("inf"))


def test_failover_follows_consul_health_within_seconds(plan: dict) -> None:
    """side_effect stopped api's app on vmmesh-cs2 under load from web's sidecar, then started it again."""
    client, stopped_host = _host(CLIENT), _host("vmmesh-cs2")
    stopped = float(stopped_host.file("/root/failover-stopped.ts").content_string)
    started = float(stopped_host.file("/root/failover-started.ts").content_string)
    address = next(i["address"] for i in plan["services"]["api"]["instances"] if i["host"] == "vmmesh-cs2")
    envoy = _timed(client.file("/root/failover-envoy.log").content_string)
    consul = _timed(client.file("/root/failover-consul.log").content_string)
    load = _timed(client.file("/root/failover-load.log").content_string)

    assert any(stamp < stopped and address in rest for stamp, rest in envoy), "both instances before the stop"
    critical = _first(consul, stopped, lambda rest: "vmmesh-cs2" not in rest)
    removed = _first(envoy, stopped, lambda rest: address not in rest.split())
    back_in_consul = _first(consul, started, lambda rest: "vmmesh-cs2" in rest)
    back = _first(envoy, started, lambda rest: address in rest.split())

    answers = []
    for stamp, rest in load:
        body, _sep, status = rest.rpartition(" ")
        try:
            host = json.loads(body)["host"]
        except ValueError:
            host = None
        answers.append((stamp, status, host))
    failed = [a for a in answers if a[1] != "200"]
    while_removed = [a for a in answers if removed + 0.5 < a[0] < started]
    after_back = [a for a in answers if a[0] > back + 0.5]
    print(
        f"check critical after {critical - stopped:.2f} s, removed from web's Envoy after {removed - stopped:.2f} s; "
        f"back in Consul {back_in_consul - started:.2f} s and in Envoy {back - started:.2f} s after the restart; "
        f"requests failed: {len(failed)}/{len(answers)}"
    )
    assert critical - stopped < FAILOVER_BUDGET_S
    assert removed - stopped < FAILOVER_BUDGET_S
    assert back - started < FAILOVER_BUDGET_S
    assert len(answers) > 200, "the load did not run"
    assert len(failed) <= len(answers) // 100, f"too many failed requests: {failed[:5]}"
    assert while_removed and all(a[2] == "vmmesh-cs3" for a in while_removed)
    assert any(a[2] == "vmmesh-cs2" for a in after_back), "traffic did not come back to vmmesh-cs2"


def test_anonymous_reads_are_limited_to_the_meshs_services(plan: dict, bootstrap_secret: str) -> None:
    """Consul 1.16 has no DNS token: the default token reads the mesh's services (and Consul's) only."""
    client = _host(CLIENT)
    body = '{"ID": "outsider", "Name": "outsider", "Port": 7, "Address": "127.0.0.1"}'
    assert _api(client, "/v1/agent/service/register", token=bootstrap_secret, method="PUT", data=body)[0] == 200
    try:
        client.run("sleep 2")
        assert _json(client, "/v1/catalog/service/outsider", bootstrap_secret), "registered"
        status, anonymous = _api(client, "/v1/catalog/service/outsider")
        assert status == 200 and json.loads(anonymous) == []
        assert client.check_output("dig +short @127.0.0.1 -p 8600 outsider.service.dc1.consul") == ""
        api = client.check_output("dig +short @127.0.0.1 -p 8600 api.service.dc1.consul").split()
        assert sorted(api) == sorted(i["address"] for i in plan["services"]["api"]["instances"])
    finally:
        _api(client, "/v1/agent/service/deregister/outsider", token=bootstrap_secret, method="PUT")


@pytest.mark.parametrize("name", [*SERVERS, CLIENT])
def test_a_renewed_certificate_is_served_after_a_reload_without_restart(name: str) -> None:
    """side_effect installed a renewed agent certificate and notified `vmmesh consul certificates changed`."""
    host = _host(name)
    certs = "/etc/vmmesh/certs/consul"
    installed = host.check_output(f"openssl x509 -noout -serial -in {certs}/cert.pem")
    served = host.check_output(
        f"openssl s_client -connect 127.0.0.1:8501 -CAfile {certs}/ca-bundle.pem -cert {certs}/cert.pem "
        f"-key {certs}/key.pem </dev/null 2>/dev/null | openssl x509 -noout -serial"
    )
    pki = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "pki"
    renewed = x509.load_pem_x509_certificate((pki / f"{name}-renewed.crt").read_bytes()).serial_number
    original = x509.load_pem_x509_certificate((pki / f"{name}.crt").read_bytes()).serial_number
    assert renewed != original
    assert int(served.partition("=")[2], 16) == int(installed.partition("=")[2], 16) == renewed
    pid_before = host.file("/root/consul-pid-before-renewal").content_string.strip()
    assert host.check_output("systemctl show -p MainPID --value consul") == pid_before, "consul was restarted"


# --------------------------------------------------------------------------------------------------------------------
# Prometheus (the lab's build, with Consul discovery) on vmmesh-cs1 finds every registered target through Consul
# --------------------------------------------------------------------------------------------------------------------

PROMETHEUS = "vmmesh-cs1"
SCRAPE_INTERVAL_S = 5.0


def _prometheus(path: str) -> dict:
    body = _host(PROMETHEUS).check_output(f"curl -sf -m 5 'http://127.0.0.1:9090{path}'")
    answer = json.loads(body)
    assert answer["status"] == "success", body
    return answer["data"]


def _targets() -> dict[tuple[str, str], dict]:
    return {
        (t["labels"]["job"], t["labels"]["instance"]): t
        for t in _prometheus("/api/v1/targets?state=active")["activeTargets"]
    }


def _scraped_since(target: dict, since: float) -> bool:
    last = target["lastScrape"]
    if last.startswith("0001-"):
        return False
    # RFC 3339 with nanoseconds: keep microseconds for fromisoformat.
    stamp = re.sub(r"(\.\d{6})\d*", r"\1", last).replace("Z", "+00:00")
    return datetime.datetime.fromisoformat(stamp).timestamp() > since


def _now(host) -> float:
    return float(host.check_output("date +%s.%N"))


@pytest.fixture(scope="module")
def expected_targets(bootstrap_secret: str) -> dict[tuple[str, str], str]:
    """(job, instance) -> node, for everything registered in Consul for Prometheus, plus its own two."""
    client = _host(CLIENT)
    expected = {("prometheus", "127.0.0.1:9090"): PROMETHEUS, ("consul-agent", "127.0.0.1:8500"): PROMETHEUS}
    for job, service in (("node", "node-exporter"), ("vmmesh-sidecars", "vmmesh-envoy-metrics")):
        for entry in _json(client, f"/v1/catalog/service/{service}?tag=vmmesh-metrics", bootstrap_secret):
            address = entry["ServiceAddress"] or entry["Address"]
            expected[(job, f"{address}:{entry['ServicePort']}")] = entry["Node"]
    for entry in _json(client, "/v1/catalog/service/consul", bootstrap_secret):
        expected[("consul-servers", f"{entry['Address']}:8501")] = entry["Node"]
    return expected


def test_prometheus_finds_every_registered_target_through_consul(expected_targets: dict) -> None:
    targets = _targets()
    assert sorted(targets) == sorted(expected_targets)
    # 4 node_exporters, 3 Envoy sidecars, 3 Consul servers, the local agent and Prometheus itself.
    assert len(targets) == 12
    for key, target in targets.items():
        assert target["health"] == "up", f"{key}: {target['lastError']}"
        assert target["labels"]["host"] == expected_targets[key], key
        assert target["labels"]["mesh"] == "lab", key
        # Found through Consul, not from a file or a static list.
        service = {"node": "node-exporter", "vmmesh-sidecars": "vmmesh-envoy-metrics", "consul-servers": "consul"}
        if key[0] in service:
            assert target["discoveredLabels"]["__meta_consul_service"] == service[key[0]], key
    sidecars = sorted(
        (t["labels"]["service"], t["labels"]["sidecar"], t["labels"]["host"])
        for (job, _instance), t in targets.items()
        if job == "vmmesh-sidecars"
    )
    assert sidecars == [("api", "envoy", "vmmesh-cs2"), ("api", "envoy", "vmmesh-cs3"), ("web", "envoy", "vmmesh-cc1")]
    up = _prometheus("/api/v1/query?query=up")["result"]
    assert sorted((r["metric"]["job"], r["metric"]["instance"]) for r in up) == sorted(expected_targets)
    assert all(r["value"][1] == "1" for r in up)
    # Consul's telemetry arrives: the leader as seen by every server.
    leaders = _prometheus("/api/v1/query?query=consul_server_isLeader")["result"]
    assert sorted(r["value"][1] for r in leaders if r["metric"]["job"] == "consul-servers") == ["0", "0", "1"]


def test_prometheus_runs_the_lab_build_under_its_own_unit() -> None:
    host = _host(PROMETHEUS)
    version = host.check_output("/usr/local/bin/prometheus --version 2>&1 | head -1")
    assert "version 3.16.0" in version
    assert host.file("/etc/systemd/system/prometheus.service").contains("User=prometheus")
    token = host.file("/etc/prometheus/secrets/consul_token")
    assert (token.user, token.group, token.mode) == ("root", "prometheus", 0o640)
    config = host.file("/etc/prometheus/prometheus.yml")
    assert (config.user, config.group, config.mode) == ("root", "prometheus", 0o640)
    assert token.content_string not in config.content_string
    processes = [p for p in host.process.filter(user="prometheus") if "/usr/local/bin/prometheus" in p.args]
    assert len(processes) == 1


def test_a_restarted_prometheus_scrapes_every_target_within_two_intervals(expected_targets: dict) -> None:
    host = _host(PROMETHEUS)
    host.check_output("systemctl restart prometheus")
    while host.run("curl -sf -m 1 http://127.0.0.1:9090/-/ready").rc != 0:
        host.run("sleep 0.2")
    ready = _now(host)
    deadline = ready + 4 * SCRAPE_INTERVAL_S
    while True:
        targets = _targets()
        now = _now(host)
        all_up = sorted(targets) == sorted(expected_targets) and all(
            t["health"] == "up" and _scraped_since(t, ready) for t in targets.values()
        )
        if all_up or now > deadline:
            break
        host.run("sleep 0.2")
    print(f"every target discovered through Consul and up {now - ready:.1f} s after Prometheus was ready")
    assert all_up, {key: (t["health"], t["lastError"]) for key, t in targets.items()}
    assert now - ready <= 2 * SCRAPE_INTERVAL_S


def _wait_for(predicate, host, timeout: float) -> tuple[float, dict]:
    started = _now(host)
    while True:
        targets = _targets()
        now = _now(host)
        if predicate(targets, started) or now - started > timeout:
            return now - started, targets
        host.run("sleep 0.2")


def test_a_stopped_exporter_turns_only_its_target_down_and_back_up(expected_targets: dict) -> None:
    prometheus, client = _host(PROMETHEUS), _host(CLIENT)
    stopped_key = next(key for key, node in expected_targets.items() if key[0] == "node" and node == CLIENT)
    client.check_output("systemctl stop node_exporter")
    try:
        since = _now(prometheus)
        took_down, targets = _wait_for(
            lambda t, start: t[stopped_key]["health"] == "down" and _scraped_since(t[stopped_key], start),
            prometheus,
            4 * SCRAPE_INTERVAL_S,
        )
        assert targets[stopped_key]["health"] == "down", targets[stopped_key]
        # Every other target was scraped since the stop and is still up.
        _took, targets = _wait_for(
            lambda t, _start: all(_scraped_since(v, since) for k, v in t.items() if k != stopped_key),
            prometheus,
            2 * SCRAPE_INTERVAL_S,
        )
        others = {key: t["health"] for key, t in targets.items() if key != stopped_key}
        assert set(others.values()) == {"up"}, others
        down = _prometheus("/api/v1/query?query=up%3D%3D0")["result"]
        assert [(r["metric"]["job"], r["metric"]["instance"]) for r in down] == [stopped_key]
    finally:
        client.check_output("systemctl start node_exporter")
    took_up, targets = _wait_for(
        lambda t, start: t[stopped_key]["health"] == "up" and _scraped_since(t[stopped_key], start),
        prometheus,
        4 * SCRAPE_INTERVAL_S,
    )
    print(f"{stopped_key[1]} down {took_down:.1f} s after node_exporter stopped, up {took_up:.1f} s after it started")
    assert targets[stopped_key]["health"] == "up"
    assert took_down <= 2 * SCRAPE_INTERVAL_S
    assert took_up <= 2 * SCRAPE_INTERVAL_S
