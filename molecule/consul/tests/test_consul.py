"""The Consul cluster seen from its hosts: formed, encrypted, locked down, and steady through restarts."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import pytest
import testinfra

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
