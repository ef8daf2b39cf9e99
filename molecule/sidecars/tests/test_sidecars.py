"""The sidecars seen from outside: real calls between lab hosts through Envoy and HAProxy, over mTLS."""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from functools import cache
from pathlib import Path

import pytest
import testinfra
import yaml

EPHEMERAL = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"])
PLAN = json.loads((EPHEMERAL / "plan.json").read_text())
PKI = EPHEMERAL / "pki"
CLIENT = "vmmesh-sc1"
VERSIONS = Path(__file__).resolve().parents[3] / "roles" / "_common" / "vars" / "versions.yml"
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


def _get(host: str, port: int, path: str = "/", options: str = "") -> tuple[int, dict]:
    """GET http://127.0.0.1:<port><path> on a host, as its application would: (status, echoed JSON or {})."""
    out = _host(host).check_output(
        f"curl -s -m 5 -o /tmp/body -w '%{{http_code}}' {options} http://127.0.0.1:{port}{path}"
    )
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
# HTTP/2 and gRPC: app -> local sidecar -> mTLS with HTTP/2 -> remote sidecar -> app

# (client host, local port, destination service, caller): Envoy -> Envoy, Envoy -> HAProxy, HAProxy -> Envoy
GRPC_HOPS = [
    ("vmmesh-sc1", 9104, "greeter", "front"),
    ("vmmesh-sc1", 9105, "ledger", "front"),
    ("vmmesh-sc3", 9202, "greeter", "legacy"),
]


def _grpc(host: str, port: int, method: str, argument: str = "") -> dict:
    return json.loads(_host(host).check_output(f"vmmesh-grpc call {port} {method} {argument}"))


def _stats(host: str, service: str, pattern: str) -> dict[str, int]:
    """Envoy counters and gauges of the sidecar of ``service`` on ``host`` whose name matches ``pattern``."""
    admin = _instance(service, host)["admin_port"]
    out = _host(host).check_output(f"curl -gsf -m 5 'http://127.0.0.1:{admin}/stats?filter={pattern}'")
    pairs = (line.rsplit(": ", 1) for line in out.splitlines() if ": " in line)
    return {name: int(value) for name, value in pairs if value.isdigit()}


def _stat(host: str, service: str, name: str) -> int:
    return _stats(host, service, f"^{name}$").get(name, 0)


def _health_flags(host: str, service: str, cluster: str) -> dict[str, str]:
    """{endpoint: health flags} of a cluster of the sidecar of ``service`` on ``host`` ("healthy" when in rotation)."""
    admin = _instance(service, host)["admin_port"]
    out = _host(host).check_output(f"curl -sf -m 5 http://127.0.0.1:{admin}/clusters")
    rows = (line.split("::") for line in out.splitlines())
    return {row[1]: row[3] for row in rows if len(row) == 4 and row[0] == cluster and row[2] == "health_flags"}


@pytest.mark.parametrize(("host", "port", "service", "caller"), GRPC_HOPS)
def test_grpc_call_through_the_mesh(host: str, port: int, service: str, caller: str) -> None:
    answer = _grpc(host, port, "/vmmesh.Echo/Call", "hello")
    assert answer["code"] == "OK", answer
    reply = answer["reply"]
    assert (reply["service"], reply["argument"]) == (service, "hello")
    if PLAN["services"][service]["sidecar"] == "envoy":
        assert f"URI={_identity(caller)}" in reply["metadata"]["x-forwarded-client-cert"]
    else:
        assert reply["metadata"]["x-forwarded-client-cert-cn"] == caller


@pytest.mark.parametrize(("host", "port", "service", "caller"), GRPC_HOPS)
@pytest.mark.parametrize("code", ["NOT_FOUND", "ALREADY_EXISTS", "RESOURCE_EXHAUSTED"])
def test_grpc_status_codes_propagate(host: str, port: int, service: str, caller: str, code: str) -> None:
    answer = _grpc(host, port, "/vmmesh.Echo/Fail", code)
    assert answer == {"code": code, "details": f"{service} was asked to fail"}


def test_grpc_health_check_answers_serving_through_the_mesh() -> None:
    assert _grpc(CLIENT, 9104, "/grpc.health.v1.Health/Check") == {"code": "OK", "raw": "0801"}


@pytest.mark.parametrize(("port", "sidecar"), [(9304, "envoy"), (9305, "haproxy")])
def test_denied_grpc_caller_gets_permission_denied(port: int, sidecar: str) -> None:
    assert _grpc(CLIENT, port, "/vmmesh.Echo/Call")["code"] == "PERMISSION_DENIED", f"rogue -> {sidecar} destination"


@pytest.mark.parametrize(("upstream", "port"), [("greeter", 9104), ("ledger", 9105), ("static", 9106)])
def test_envoy_speaks_http2_to_the_destination_sidecar(upstream: str, port: int) -> None:
    """front's clusters towards an Envoy (greeter, static) and an HAProxy (ledger) destination: HTTP/2 only.

    A call first, from an HTTP/1.1 client for static: the sidecar may have been restarted since the last one.
    """
    if upstream == "static":
        assert _get(CLIENT, port, "/", "--http1.1")[0] == 200
    else:
        assert _grpc(CLIENT, port, "/vmmesh.Echo/Call")["code"] == "OK"
    stats = _stats(CLIENT, "front", f"^cluster\\.upstream\\.{upstream}\\.upstream_cx_http[12]_total$")
    assert stats[f"cluster.upstream.{upstream}.upstream_cx_http2_total"] > 0, stats
    assert stats[f"cluster.upstream.{upstream}.upstream_cx_http1_total"] == 0, stats


def test_haproxy_speaks_http2_to_the_destination_sidecar() -> None:
    """legacy's HAProxy calls greeter's Envoy: every request it forwards arrives as HTTP/2."""
    before = _stats("vmmesh-sc2", "greeter", "^http\\.inbound\\.downstream_rq_http[12]_total$")
    for _attempt in range(5):
        assert _grpc("vmmesh-sc3", 9202, "/vmmesh.Echo/Call")["code"] == "OK"
    after = _stats("vmmesh-sc2", "greeter", "^http\\.inbound\\.downstream_rq_http[12]_total$")
    assert after["http.inbound.downstream_rq_http2_total"] - before["http.inbound.downstream_rq_http2_total"] >= 5
    assert after["http.inbound.downstream_rq_http1_total"] == before["http.inbound.downstream_rq_http1_total"]


@pytest.mark.parametrize(("host", "port"), [("vmmesh-sc1", 9106), ("vmmesh-sc3", 9203)], ids=["envoy", "haproxy"])
@pytest.mark.parametrize("client", ["--http2-prior-knowledge", "--http1.1"])
def test_http2_application_through_either_sidecar(host: str, port: int, client: str) -> None:
    """static's application (nghttpd) speaks HTTP/2 only; the calling application may use either version."""
    out = _host(host).check_output(
        f"curl -s -m 5 {client} -w ' %{{http_code}} %{{http_version}}' http://127.0.0.1:{port}/"
    )
    assert out.split() == [
        "vmmesh",
        "HTTP/2",
        "application",
        "on",
        "vmmesh-sc2",
        "200",
        "2" if "http2" in client else "1.1",
    ]


def test_haproxy_speaks_http2_to_an_http2_destination() -> None:
    """legacy's HAProxy calls static's Envoy (health checks included): every request arrives as HTTP/2."""
    pattern = "^http\\.inbound\\.downstream_rq_http[12]_total$"
    before = _stats("vmmesh-sc2", "static", pattern)
    for _attempt in range(5):
        assert _get("vmmesh-sc3", 9203, "/", "--http1.1")[0] == 200
    after = _stats("vmmesh-sc2", "static", pattern)
    assert after["http.inbound.downstream_rq_http2_total"] - before["http.inbound.downstream_rq_http2_total"] >= 5
    assert after["http.inbound.downstream_rq_http1_total"] == before["http.inbound.downstream_rq_http1_total"] == 0


# ---------------------------------------------------------------------------------------------------------------------
# Traffic policies observed live


def _statuses(host: str, port: int, path: str, count: int, parallel: int, headers: str = "") -> list[str]:
    out = _host(host).check_output(
        f"seq {count} | xargs -P {parallel} -I{{}} curl -s -o /dev/null -m 10 -w '%{{http_code}}\\n' {headers}"
        f" http://127.0.0.1:{port}{path}"
    )
    return out.split()


def test_envoy_route_timeout_answers_504_at_the_timeout() -> None:
    before = _stat(CLIENT, "probe", "cluster.upstream.api.upstream_rq_timeout")
    out = _host(CLIENT).check_output(
        "curl -s -o /dev/null -m 10 -w '%{http_code} %{time_total}' http://127.0.0.1:9401/delay/3000"
    )
    status, seconds = out.split()
    assert status == "504"
    assert 0.9 <= float(seconds) <= 2.5, f"answered after {seconds}s, the route timeout is 1s"
    assert _stat(CLIENT, "probe", "cluster.upstream.api.upstream_rq_timeout") == before + 1


def test_envoy_retries_recover_a_flaky_instance() -> None:
    before = _stat(CLIENT, "probe", "cluster.upstream.api.upstream_rq_retry")
    key = uuid.uuid4().hex
    status, _body = _get(CLIENT, 9401, "/flaky", f"-H 'X-Echo-Fail-First: 1' -H 'X-Echo-Key: {key}'")
    assert status == 200
    assert _stat(CLIENT, "probe", "cluster.upstream.api.upstream_rq_retry") > before


def test_envoy_circuit_breaker_sheds_requests_beyond_its_limits() -> None:
    """probe -> api allows 2 requests in flight and 1 pending: 12 at once overflow."""
    before = _stat(CLIENT, "probe", "cluster.upstream.api.upstream_rq_pending_overflow")
    statuses = _statuses(CLIENT, 9401, "/delay/600", 12, 12)
    assert len(statuses) == 12
    assert statuses.count("200") >= 2 and statuses.count("503") >= 3, statuses
    # A request that waited as the pending one may reach the 1s route timeout on a busy machine: 504.
    assert set(statuses) <= {"200", "503", "504"}, statuses
    assert _stat(CLIENT, "probe", "cluster.upstream.api.upstream_rq_pending_overflow") >= before + statuses.count("503")


def test_envoy_local_rate_limit_answers_429() -> None:
    """static allows 20 requests a second (burst 20): 100 sent as fast as possible."""
    statuses = _statuses(CLIENT, 9106, "/", 100, 10)
    try:
        assert statuses.count("429") >= 10 and statuses.count("200") >= 20, sorted(set(statuses))
        assert set(statuses) <= {"200", "429"}, sorted(set(statuses))
        limited = _stats("vmmesh-sc2", "static", "rate_limited")
        assert sum(value for name, value in limited.items() if "local_rate_limit" in name) >= statuses.count("429")
    finally:
        _host(CLIENT).run("sleep 2")


def test_haproxy_rate_limit_answers_429() -> None:
    """legacy's HAProxy allows 40 requests a second: 200 sent as fast as possible through front's Envoy.

    HAProxy's fe_req_rate counts every request to the frontend, the health checks of the Envoys of legacy's two
    callers (front and rogue, each every 2 s) too, over a sliding second that weighs in the second before: the
    burst's own share of the 40 is a few less. The frontend's denied-request counter shows the 429s are the rule's.
    """
    before = int(_haproxy_stats("vmmesh-sc3")[("in.legacy", "FRONTEND")]["dreq"] or 0)
    started = time.monotonic()
    statuses = _statuses(CLIENT, 9102, "/", 200, 10)
    elapsed = time.monotonic() - started
    try:
        allowed = statuses.count("200")
        assert set(statuses) <= {"200", "429"}, sorted(set(statuses))
        assert statuses.count("429") >= 10, statuses.count("429")
        assert 35 <= allowed <= 40 * (elapsed + 1), f"{allowed} answered 200 in {elapsed:.2f}s"
        denied = int(_haproxy_stats("vmmesh-sc3")[("in.legacy", "FRONTEND")]["dreq"] or 0) - before
        assert denied >= statuses.count("429"), (denied, statuses.count("429"))
    finally:
        _host(CLIENT).run("sleep 2")


def _haproxy_stats(host: str) -> dict[tuple[str, str], dict[str, str]]:
    """HAProxy's stats CSV from its admin listener: {(proxy, server): {column: value}}."""
    admin = next(item for item in PLAN["hosts"][host]["listeners"] if item["kind"] == "admin" and not item["service"])
    text = _host(host).check_output(f"curl -sf -m 5 'http://127.0.0.1:{admin['port']}/;csv'")
    lines = text.lstrip("# ").splitlines()
    columns = lines[0].split(",")
    rows = [dict(zip(columns, line.split(","), strict=False)) for line in lines[1:] if line]
    return {(row["pxname"], row["svname"]): row for row in rows}


def test_haproxy_retries_recover_a_flaky_instance() -> None:
    before = int(_haproxy_stats("vmmesh-sc3")[("up.legacy.api", "BACKEND")]["wretr"] or 0)
    key = uuid.uuid4().hex
    status, _body = _get("vmmesh-sc3", 9201, "/flaky", f"-H 'X-Echo-Fail-First: 1' -H 'X-Echo-Key: {key}'")
    assert status == 200
    after = _haproxy_stats("vmmesh-sc3")
    assert int(after[("up.legacy.api", "BACKEND")]["wretr"] or 0) > before
    # HAProxy accounts only the answer it keeps: a retried 503 is neither a 5xx response nor an error seen by
    # "observe layer7" (which is why its outlier detection cannot see failures that retries absorb).
    assert int(after[("up.legacy.api", "srv1")]["hanafail"] or 0) == 0


def _failing_answers(count: int) -> list[tuple[str, str]]:
    """(answering host, status) of ``count`` requests from probe to api that vmmesh-sc2's application fails."""
    out = _host(CLIENT).check_output(
        f"for i in $(seq {count}); do curl -s -m 5 -H 'X-Echo-Fail-Host: vmmesh-sc2' -w ' %{{http_code}}\\n'"
        " http://127.0.0.1:9401/failing; done"
    )
    return [(json.loads(line.rsplit(" ", 1)[0])["host"], line.rsplit(" ", 1)[1]) for line in out.splitlines()]


def test_envoy_outlier_detection_ejects_an_instance_answering_5xx() -> None:
    """probe -> api: 3 consecutive 5xx from one instance eject it, and requests stop trying it.

    Every request that meets vmmesh-sc2 is retried on vmmesh-sc3. Once the ejection has reached Envoy's workers
    (health changes are merged over a second, Envoy's update_merge_window), no request tries vmmesh-sc2 while it stays
    ejected (10 s), although it passes its health checks.
    """
    prefix = "cluster.upstream.api."
    # Both instances must be in rotation: with none healthy, Envoy balances over all of them, ejected or not (panic);
    # and at most one may be ejected (max_ejection_percent 50), so one ejected by an earlier test (or by the
    # side effect's failover) would keep vmmesh-sc2 in. An ejection
    # ends after 10 s times the number of the instance's ejections.
    deadline = time.monotonic() + 65
    while set(_health_flags(CLIENT, "probe", "upstream.api").values()) != {"healthy"}:
        assert time.monotonic() < deadline, _health_flags(CLIENT, "probe", "upstream.api")
        time.sleep(0.5)
    ejected = _stat(CLIENT, "probe", prefix + "outlier_detection.ejections_enforced_consecutive_5xx")
    answers = []
    while not _stat(CLIENT, "probe", prefix + "outlier_detection.ejections_active"):
        assert len(answers) < 6, f"vmmesh-sc2 not ejected after {len(answers)} requests: {answers}"
        answers += _failing_answers(1)
    assert _stat(CLIENT, "probe", prefix + "outlier_detection.ejections_enforced_consecutive_5xx") == ejected + 1
    assert set(_health_flags(CLIENT, "probe", "upstream.api").values()) == {"healthy", "/failed_outlier_check"}
    time.sleep(2)
    retried = _stat(CLIENT, "probe", prefix + "upstream_rq_retry")
    answers += _failing_answers(12)
    assert answers == [("vmmesh-sc3", "200")] * len(answers), answers
    assert _stat(CLIENT, "probe", prefix + "upstream_rq_retry") == retried, "a request tried the ejected instance"
    assert _stat(CLIENT, "probe", prefix + "outlier_detection.ejections_active") == 1


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


def _envoy_services(host: str) -> list[str]:
    return sorted(service for on, service in ENVOY_INSTANCES if on == host)


def _sidecars(host: str, name: str) -> dict[str, list[str]]:
    """What files/envoy-sidecars.sh recorded: {service: [main pid, version, epoch, state, LDS updates]}."""
    lines = _host(host).file(f"/root/{name}.txt").content_string.splitlines()
    return {line.split()[0]: line.split()[1:] for line in lines}


@pytest.mark.parametrize("host", ["vmmesh-sc1", "vmmesh-sc2", "vmmesh-sc3"])
def test_a_new_binary_hot_restarted_every_envoy_under_the_load(host: str) -> None:
    """side_effect.yml changed the Envoy binary while the load ran (the load's test above: nothing failed)."""

    before, after = _sidecars(host, "hot-restart-before"), _sidecars(host, "hot-restart-after")
    envoy = yaml.safe_load(VERSIONS.read_text())["_vmmesh_versions"]["envoy"]
    assert sorted(before) == sorted(after) == _envoy_services(host)
    for service, (pid, version, epoch, state, _lds) in after.items():
        pid_before, version_before, epoch_before, _state, _lds = before[service]
        assert (version_before, version) == (envoy["version"], envoy["lab"]["other"]["version"]), service
        assert int(epoch) > int(epoch_before), f"{service} was not hot-restarted"
        assert pid == pid_before, f"{service}'s unit was restarted, not hot-restarted"
        assert state == "LIVE", service


def test_a_failed_hot_restart_ended_in_a_plain_restart() -> None:
    """side_effect.yml gave vmmesh-sc2 a binary that refuses to be a later epoch: each hot restart failed, the
    role checked the binary with the bootstrap and restarted the unit (a new main process, epoch 0)."""
    before = _sidecars("vmmesh-sc2", "failed-hot-restart-before")
    after = _sidecars("vmmesh-sc2", "failed-hot-restart-after")
    assert sorted(before) == sorted(after) == _envoy_services("vmmesh-sc2")
    for service, (pid, _version, epoch, state, _lds) in after.items():
        assert pid != before[service][0], f"{service}'s unit was not restarted"
        assert (epoch, state) == ("0", "LIVE"), service
    log = _host("vmmesh-sc2").check_output("journalctl -u envoy@api --no-pager -n 500")
    assert "refusing a hot restart" in log
    assert "failed to take over" in log


def test_listener_change_went_live_without_restart() -> None:
    admin = _instance("front", CLIENT)["admin_port"]
    host = _host(CLIENT)
    dump = host.check_output(f"curl -sf -m 5 'http://127.0.0.1:{admin}/config_dump?resource=dynamic_listeners'")
    assert '"timeout": "20s"' in dump
    # Read before the binary change: the listeners were replaced in place (more than the first load) by the first
    # process (epoch 0).
    _pid, _version, epoch, _state, lds_updates = front = _sidecars(CLIENT, "hot-restart-before")["front"]
    assert (int(epoch), int(lds_updates) >= 2) == (0, True), front
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


def test_haproxy_reloaded_onto_the_rotated_certificate_by_the_topic_handler() -> None:
    """The rotation notified "vmmesh haproxy certificates changed"; the role's Reload haproxy handler loaded it."""
    host = _host("vmmesh-sc3")
    served = host.file("/root/rotation-served.txt").content_string.strip()
    on_disk = host.check_output("openssl x509 -noout -serial -in /etc/vmmesh/certs/legacy/cert.pem")
    assert served.startswith("serial=") and served == on_disk


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


def _leave_report(host: str) -> dict[str, str]:
    text = _host(host).file("/root/leave.txt").content_string
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def test_the_last_haproxy_service_leaving_stops_and_disables_haproxy() -> None:
    report = _leave_report("vmmesh-sc3")
    assert (report["haproxy_active"], report["haproxy_enabled"], report["haproxy_dropin"]) == (
        "inactive",
        "disabled",
        "absent",
    )
    legacy = _instance("legacy", "vmmesh-sc3")
    assert f"{legacy['address']}:{legacy['inbound_port']}" not in report["listening"].split()
    assert "127.0.0.1:9201" not in report["listening"].split()
    # api's Envoy on the same host kept serving
    assert (
        f"{_instance('api', 'vmmesh-sc3')['address']}:{_instance('api', 'vmmesh-sc3')['inbound_port']}"
        in report["listening"].split()
    )


def test_an_envoy_service_leaving_removes_its_sidecar() -> None:
    report = _leave_report(CLIENT)
    assert (report["rogue_active"], report["rogue_enabled"], report["rogue_config"]) == (
        "inactive",
        "disabled",
        "absent",
    )
    assert "127.0.0.1:9301" not in report["listening"].split()
    assert "127.0.0.1:9101" in report["listening"].split()


# ---------------------------------------------------------------------------------------------------------------------
# Failover


def _failover_answers() -> list[tuple[float, str, str | None]]:
    """The failover load's requests: (time it was sent, status, answering host)."""
    answers = []
    for line in _host(CLIENT).file("/root/failover-load.log").content_string.splitlines():
        stamp, _sep, rest = line.partition(" ")
        body, _sep, status = rest.rpartition(" ")
        try:
            answering = json.loads(body)["host"]
        except ValueError:
            answering = None
        answers.append((float(stamp), status, answering))
    return answers


def test_failover_when_an_instance_stops_and_when_its_host_hangs() -> None:
    """side_effect: under load from probe, api's application on vmmesh-sc2 stopped and started; then the host froze.

    probe's Envoy retries a 5xx on the other instance, ejects vmmesh-sc2 after 3 consecutive 5xx and health-checks it
    every 2 s (1 s timeout). A stopped application costs no request: its sidecar answers 503, which is retried. A hung
    host costs the requests sent to it until its third failed health check (at most 3 x 3 s): each waits for the 1 s
    route timeout and gets 504, which is not retried (and, seen here, not counted by outlier detection); then none.
    Each time, requests reach vmmesh-sc2 again once it is back.
    """
    stamps = json.loads((EPHEMERAL / "failover-stamps.json").read_text())
    answers = _failover_answers()
    app, frozen = stamps["app"], stamps["host"]

    def sent(start: float, end: float) -> list[tuple[float, str, str | None]]:
        return [answer for answer in answers if start <= answer[0] < end]

    def back(since: float) -> float:
        return next((a[0] for a in answers if a[0] > since and a[1] == "200" and a[2] == "vmmesh-sc2"), float("inf"))

    # A request sent to vmmesh-sc2 shortly before `podman pause` returned may already hang: the host's share of the
    # failures starts 1 s (the route timeout) before the controller's stamp.
    freezing = frozen["stopped"] - 1
    failed = [answer for answer in answers if answer[1] != "200"]
    failed_while_app = [answer for answer in failed if answer[0] < freezing]
    failed_while_host = [answer for answer in failed if answer[0] >= freezing]
    while_frozen = sent(frozen["stopped"], frozen["started"])
    last_failure = max((answer[0] for answer in failed), default=frozen["stopped"])
    print(
        f"\nfailover: {len(answers)} requests from probe to api, {len(failed)} failed;"
        f" application stopped {app['started'] - app['stopped']:.1f} s: from its stop to the freeze"
        f" {len(sent(app['stopped'], frozen['stopped']))} requests, failed"
        f" {len(failed_while_app)}, vmmesh-sc2 answering again"
        f" {back(app['started']) - app['started']:.1f} s after the start;"
        f" host frozen {frozen['started'] - frozen['stopped']:.1f} s: {len(while_frozen)} requests meanwhile, failed"
        f" {len(failed_while_host)}, the last {last_failure - frozen['stopped']:.1f} s"
        f" after the freeze, vmmesh-sc2 answering again {back(frozen['started']) - frozen['started']:.1f} s after the"
        " thaw"
    )
    assert len(answers) > 200, "the load did not run"
    assert {a[2] for a in sent(0, app["stopped"]) if a[1] == "200"} == {"vmmesh-sc2", "vmmesh-sc3"}
    # The stopped application: vmmesh-sc2's Envoy answers 503, which probe's Envoy retries on vmmesh-sc3.
    assert not failed_while_app, failed_while_app
    # The hung host: the requests sent to it time out (504) until its health checks fail, a handful; then none.
    assert all(a[1] == "504" and a[0] < frozen["stopped"] + 10 for a in failed_while_host), failed_while_host
    assert len(failed_while_host) <= 10, failed_while_host
    calm = sent(last_failure + 1, frozen["started"])
    assert len(calm) >= 10 and all(a[2] == "vmmesh-sc3" for a in calm), calm[:5]
    # Back: requests reach vmmesh-sc2 again once it passes two health checks and its ejection, if any, has ended
    # (10 s times the number of its ejections).
    assert back(app["started"]) < frozen["stopped"]
    assert back(frozen["started"]) - frozen["started"] < 40
