"""The mesh's real binaries run inside a lab host, at the pinned versions."""

from __future__ import annotations

from pathlib import Path

import pytest
import testinfra
import yaml

ROOT = Path(__file__).resolve().parents[3]
PINNED = yaml.safe_load((ROOT / "roles/_common/vars/versions.yml").read_text())["_vmmesh_versions"]


@pytest.fixture(scope="module")
def host():
    # The lab host is a local container: talk to it with podman exec.
    return testinfra.get_host("podman://vmmesh-bin1")


def test_envoy_runs_at_the_pinned_version(host) -> None:
    result = host.run("/usr/local/bin/envoy --version")
    assert result.rc == 0, result.stderr
    assert f"/{PINNED['envoy']['version']}/Clean/RELEASE/" in result.stdout


def test_envoy_validates_a_config(host) -> None:
    config = """
static_resources:
  listeners:
    - name: probe
      address: {socket_address: {address: 127.0.0.1, port_value: 15000}}
      filter_chains:
        - filters:
            - name: envoy.filters.network.tcp_proxy
              typed_config:
                "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
                stat_prefix: probe
                cluster: probe
  clusters:
    - name: probe
      type: STATIC
      load_assignment:
        cluster_name: probe
        endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 15001}}}}]}]
"""
    host.run("mkdir -p /tmp/envoy-probe")
    host.run(f"cat > /tmp/envoy-probe/probe.yaml <<'EOF'\n{config}\nEOF")
    result = host.run("/usr/local/bin/envoy --mode validate -c /tmp/envoy-probe/probe.yaml")
    assert result.rc == 0, result.stdout + result.stderr
    assert "OK" in result.stdout + result.stderr


def test_consul_runs_at_the_pinned_version(host) -> None:
    result = host.run("/usr/local/bin/consul version")
    assert result.rc == 0, result.stderr
    assert f"Consul v{PINNED['consul']['version']}" in result.stdout


def test_consul_agent_starts_and_elects_itself(host) -> None:
    """A dev agent (one server, in memory) answers its HTTP API: the binary really works."""
    host.run("rm -rf /tmp/consul-probe && mkdir -p /tmp/consul-probe")
    host.run(
        "nohup /usr/local/bin/consul agent -dev -bind 127.0.0.1 -client 127.0.0.1 -http-port 18500 "
        "-dns-port 18600 -data-dir /tmp/consul-probe >/tmp/consul-probe/log 2>&1 & echo $! > /tmp/consul-probe/pid"
    )
    try:
        result = host.run(
            "for i in $(seq 1 60); do "
            "curl -fsS http://127.0.0.1:18500/v1/status/leader 2>/dev/null | grep -q 127.0.0.1 && exit 0; sleep 0.5; "
            "done; exit 1"
        )
        assert result.rc == 0, host.file("/tmp/consul-probe/log").content_string
        members = host.run("/usr/local/bin/consul members -http-addr=127.0.0.1:18500")
        assert "alive" in members.stdout
    finally:
        host.run("kill $(cat /tmp/consul-probe/pid)")
