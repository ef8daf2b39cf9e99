"""The sidecars seen from outside: real calls between lab hosts through Envoy and HAProxy, over mTLS."""

from __future__ import annotations

import json
import os
import subprocess
from functools import cache
from pathlib import Path

import pytest
import testinfra

EPHEMERAL = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"])
PLAN = json.loads((EPHEMERAL / "plan.json").read_text())
PKI = EPHEMERAL / "pki"
CLIENT = "vmmesh-sc1"
ENVOY_INSTANCES = [
    (instance["host"], name)
    for name, service in sorted(PLAN["services"].items())
    for instance in service["instances"]
    if instance["sidecar"] == "envoy"
]
SPLIT_REQUESTS = 300


@cache
def _host(name: str):
    return testinfra.get_host(f"podman://{name}")


def _identity(service: str) -> str:
    return PLAN["services"][service]["identity"]


def _instance(service: str, host: str) -> dict:
    return next(i for i in PLAN["services"][service]["instances"] if i["host"] == host)


def _get(host: str, port: int, path: str = "/") -> tuple[int, dict]:
    """GET http://127.0.0.1:<port><path> on a host, as its application would: (status, echoed JSON or {})."""
    out = _host(host).check_output(f"curl -s -m 5 -o /tmp/body -w '%{{http_code}}' http://127.0.0.1:{port}{path}")
    body = _host(host).file("/tmp/body").content_string
    try:
        return int(out), json.loads(body)
    except ValueError:
        return int(out), {}


def _mtls(service: str, host: str, *, cert: str | None, key: str | None) -> object:
    """Call an instance's inbound port directly from the client host with the given client certificate."""
    instance = _instance(service, host)
    dns = PLAN["services"][service]["dns_name"]
    args = [
        "curl -s -m 5 -o /dev/null -w '%{http_code}'",
        f"--resolve {dns}:{instance['inbound_port']}:{instance['address']}",
        "--cacert /root/pki/ca.crt",
    ]
    if cert:
        args += [f"--cert {cert}", f"--key {key}"]
    return _host(CLIENT).run(" ".join([*args, f"https://{dns}:{instance['inbound_port']}/healthz"]))


# ---------------------------------------------------------------------------------------------------------------------
# The processes


@pytest.mark.parametrize(("host", "service"), ENVOY_INSTANCES)
def test_one_hardened_envoy_per_service_instance(host: str, service: str) -> None:
    unit = _host(host).service(f"envoy@{service}")
    assert unit.is_running and unit.is_enabled
    assert sorted(
        _host(host).check_output(f"systemctl show -p NoNewPrivileges,ProtectSystem envoy@{service}").split()
    ) == [
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
    ]
    pid = _host(host).check_output(f"systemctl show -p MainPID --value envoy@{service}")
    assert _host(host).check_output(f"ps -o user= -p {pid}") == "envoy"


def test_haproxy_runs_master_worker_hardened() -> None:
    host = _host("vmmesh-sc3")
    assert host.service("haproxy").is_running
    assert "-Ws" in host.check_output("ps -o args= -C haproxy")
    assert "haproxy" in host.check_output("ps -o user= -C haproxy").split()
    assert host.check_output("systemctl show -p NoNewPrivileges --value haproxy") == "yes"


def test_admin_listeners_are_bound_to_localhost() -> None:
    for name, plan in PLAN["hosts"].items():
        sockets = _host(name).check_output("ss -Htln")
        for listener in plan["listeners"]:
            if listener["kind"] == "admin":
                assert f"127.0.0.1:{listener['port']} " in sockets
                assert f"0.0.0.0:{listener['port']} " not in sockets


def test_every_sidecar_serves_prometheus_metrics() -> None:
    for name, plan in PLAN["hosts"].items():
        for listener in plan["listeners"]:
            if listener["kind"] == "metrics":
                text = _host(name).check_output(f"curl -sf -m 5 http://127.0.0.1:{listener['port']}/metrics")
                assert ("envoy_server_live" if listener["service"] else "haproxy_process_") in text


# ---------------------------------------------------------------------------------------------------------------------
# Calls through the mesh


def test_envoy_to_envoy_http_carries_the_callers_identity() -> None:
    status, body = _get(CLIENT, 9101, "/hello")
    assert status == 200
    assert body["service"] == "api"
    assert f"URI={_identity('front')}" in body["headers"]["x-forwarded-client-cert"]


def test_canary_split_is_90_10_within_tolerance() -> None:
    out = _host(CLIENT).check_output(
        f"for i in $(seq {SPLIT_REQUESTS}); do curl -s -m 5 http://127.0.0.1:9101/split; echo; done"
    )
    answers = [json.loads(line)["host"] for line in out.splitlines() if line]
    assert len(answers) == SPLIT_REQUESTS
    share_v2 = answers.count("vmmesh-sc3") / SPLIT_REQUESTS
    assert answers.count("vmmesh-sc2") + answers.count("vmmesh-sc3") == SPLIT_REQUESTS
    assert 0.05 <= share_v2 <= 0.16, f"v2 got {share_v2:.1%} of {SPLIT_REQUESTS} requests"


def test_envoy_to_haproxy_http_is_authorized_by_cn() -> None:
    status, body = _get(CLIENT, 9102, "/legacy")
    assert status == 200
    assert (body["host"], body["service"]) == ("vmmesh-sc3", "legacy")
    assert body["headers"]["x-forwarded-client-cert-cn"] == "front"


def test_haproxy_to_envoy_http() -> None:
    status, body = _get("vmmesh-sc3", 9201, "/from-legacy")
    assert status == 200
    assert body["service"] == "api"
    assert f"URI={_identity('legacy')}" in body["headers"]["x-forwarded-client-cert"]


def test_trace_headers_pass_through() -> None:
    out = _host(CLIENT).check_output(
        "curl -s -m 5 -D - -o /dev/null -H 'traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01' "
        "http://127.0.0.1:9102/trace"
    )
    assert "traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01" in out.lower()


def test_tcp_redis_through_envoy() -> None:
    host = _host(CLIENT)
    assert host.check_output("redis-cli -p 9103 set vmmesh sidecars") == "OK"
    assert host.check_output("redis-cli -p 9103 get vmmesh") == "sidecars"


# ---------------------------------------------------------------------------------------------------------------------
# Refusals


@pytest.mark.parametrize(("port", "sidecar"), [(9301, "envoy"), (9302, "haproxy")])
def test_denied_caller_gets_403(port: int, sidecar: str) -> None:
    status, _body = _get(CLIENT, port, "/")
    assert status == 403, f"rogue -> {sidecar} destination"


def test_denied_tcp_caller_is_disconnected() -> None:
    result = _host(CLIENT).run("redis-cli -p 9303 ping")
    assert "PONG" not in result.stdout


@pytest.mark.parametrize(("service", "host"), [("api", "vmmesh-sc2"), ("legacy", "vmmesh-sc3")])
def test_the_mesh_certificate_is_accepted_directly(service: str, host: str) -> None:
    result = _mtls(service, host, cert="/root/pki/front.crt", key="/root/pki/front.key")
    assert result.stdout == "200"


@pytest.mark.parametrize(("service", "host"), [("api", "vmmesh-sc2"), ("legacy", "vmmesh-sc3")])
def test_no_client_certificate_is_refused(service: str, host: str) -> None:
    result = _mtls(service, host, cert=None, key=None)
    assert result.rc != 0 and result.stdout == "000"


@pytest.mark.parametrize(("service", "host"), [("api", "vmmesh-sc2"), ("legacy", "vmmesh-sc3")])
def test_a_foreign_ca_certificate_is_refused(service: str, host: str) -> None:
    result = _mtls(service, host, cert="/root/pki/foreign-front.crt", key="/root/pki/front.key")
    assert result.rc != 0 and result.stdout == "000"


@pytest.mark.parametrize(("service", "host"), [("api", "vmmesh-sc2"), ("legacy", "vmmesh-sc3")])
def test_plaintext_is_refused(service: str, host: str) -> None:
    instance = _instance(service, host)
    result = _host(CLIENT).run(
        f"curl -s -m 5 -o /dev/null -w '%{{http_code}}' http://{instance['address']}:{instance['inbound_port']}/healthz"
    )
    assert result.stdout == "000"


# ---------------------------------------------------------------------------------------------------------------------
# After side_effect.yml: changes under load


LOAD_LOGS = [("vmmesh-sc1", 9101), ("vmmesh-sc1", 9102), ("vmmesh-sc1", 9103), ("vmmesh-sc3", 9201)]


@pytest.mark.parametrize(("host", "port"), LOAD_LOGS)
def test_no_request_failed_through_reloads_rotation_and_rejection(host: str, port: int) -> None:
    lines = _host(host).file(f"/root/load-{port}.log").content_string.split()
    expected = "PONG" if port == 9103 else "200"
    failed = [line for line in lines if line != expected]
    assert len(lines) >= 50, f"only {len(lines)} requests were made"
    assert not failed, f"{len(failed)} of {len(lines)} requests failed: {sorted(set(failed))}"


def test_listener_change_went_live_without_restart() -> None:
    admin = _instance("front", CLIENT)["admin_port"]
    host = _host(CLIENT)
    dump = host.check_output(f"curl -sf -m 5 'http://127.0.0.1:{admin}/config_dump?resource=dynamic_listeners'")
    assert '"timeout": "20s"' in dump
    stats = host.check_output(
        f"curl -sf -m 5 'http://127.0.0.1:{admin}/stats?filter=^listener_manager.lds.update_success$'"
    )
    # the listeners were replaced in place (more than the first load) by the same process
    assert int(stats.split(":")[1]) >= 2
    assert "timeout server 20s" in _host("vmmesh-sc3").file("/etc/haproxy/haproxy.cfg").content_string


@pytest.mark.parametrize(("service", "host"), [("api", "vmmesh-sc2"), ("legacy", "vmmesh-sc3")])
def test_rotated_certificate_is_served(service: str, host: str) -> None:
    instance = _instance(service, host)
    served = _host(CLIENT).check_output(
        f"openssl s_client -connect {instance['address']}:{instance['inbound_port']} -cert /root/pki/front.crt"
        " -key /root/pki/front.key </dev/null 2>/dev/null | openssl x509 -noout -serial"
    )
    on_disk = _host(host).check_output(f"openssl x509 -noout -serial -in /etc/vmmesh/certs/{service}/cert.pem")
    original = subprocess.run(
        ["openssl", "x509", "-noout", "-serial", "-in", str(PKI / f"{service}.crt")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert served == on_disk
    assert served != original, "the certificate was not rotated"


def test_envoy_rejected_the_invalid_configuration_and_kept_serving() -> None:
    host = _host(CLIENT)
    outcome = json.loads(host.file("/root/injection.json").content_string)
    assert outcome["rejected"] is True
    assert outcome["task"] == "Validate each sidecar's configuration with envoy --mode validate"
    assert not host.file("/etc/envoy/broken").exists
    assert not host.service("envoy@broken").is_running
    # the change to front that came with it did not go live either
    assert 'timeout: "20s"' in host.file("/etc/envoy/front/lds.yaml").content_string


def test_haproxy_rejected_the_invalid_configuration_and_kept_serving() -> None:
    host = _host("vmmesh-sc3")
    outcome = json.loads(host.file("/root/injection.json").content_string)
    assert outcome["rejected"] is True
    assert outcome["task"] == "Write haproxy.cfg, checked by haproxy -c"
    config = host.file("/etc/haproxy/haproxy.cfg").content_string
    assert "shaky" not in config
    assert "timeout server 20s" in config
    assert host.service("haproxy").is_running
