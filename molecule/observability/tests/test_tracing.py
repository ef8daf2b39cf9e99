"""Tracing seen from outside: the spans the sidecars send to Zipkin, read back through Zipkin's own HTTP API.

The requests start at the applications (the echo app's /chain calls its upstreams through the local sidecar and
forwards the trace headers, as applications in a mesh are asked to):

    web (obs1) -> api (obs2) -> cache (obs3)                       every hop through Envoy sidecars
    front (obs1) -> legacy (obs3, HAProxy) -> api -> cache          one hop through HAProxy

Runs after test_observability.py (file order): its report run left report.json with the trace search links.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import time
import urllib.parse
from functools import cache
from pathlib import Path

import testinfra

EPHEMERAL = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"])
SCENARIO = Path(__file__).resolve().parents[1]
PLAN = json.loads((EPHEMERAL / "plan.json").read_text())
HOSTS = ["vmmesh-obs1", "vmmesh-obs2", "vmmesh-obs3"]
CALLER = "vmmesh-obs1"  # web and front run here
ZIPKIN = "vmmesh-obs2"
WEB_CHAIN = f"http://127.0.0.1:{PLAN['services']['web']['port']}/chain"
FRONT_CHAIN = f"http://127.0.0.1:{PLAN['services']['front']['port']}/chain"
# The Envoy hops of one request through web -> api -> cache: (service, span kind, index of the parent span).
WEB_HOPS = [("web", "CLIENT", None), ("api", "SERVER", 0), ("api", "CLIENT", 1), ("cache", "SERVER", 2)]
BACKEND = {"host": "vmmesh-obs2", "port": 9411}
HAPROXY_REQUEST_ID = r"[0-9A-F]+:[0-9A-F]+_[0-9A-F]+:[0-9A-F]+_[0-9A-F]+_[0-9A-F]+:[0-9A-F]+"


@cache
def _host(name: str):
    return testinfra.get_host(f"podman://{name}")


def _zipkin(path: str):
    """GET on Zipkin's HTTP API, from the host it runs on."""
    return json.loads(_host(ZIPKIN).check_output(f"curl -sf -m 10 'http://127.0.0.1:9411{path}'"))


def _trace(trace_id: str) -> list[dict]:
    """The spans of one trace; none yet (Zipkin answers 404) is an empty list."""
    found = _host(ZIPKIN).run(f"curl -s -m 10 -w '\\n%{{http_code}}' 'http://127.0.0.1:9411/api/v2/trace/{trace_id}'")
    body, _newline, status = found.stdout.rpartition("\n")
    assert status in ("200", "404"), found.stdout + found.stderr
    return json.loads(body) if status == "200" else []


def _send(url: str, count: int, headers: list[dict] | None = None) -> dict:
    """`count` requests from the caller host, one after the other: {start_us, end_us, statuses, answers}."""
    args = f"{url} {count}" + (f" '{json.dumps(headers)}'" if headers is not None else "")
    return json.loads(_host(CALLER).check_output(f"/usr/local/bin/vmmesh-send {args}"))


def _traces(service: str, sent: dict) -> list[list[dict]]:
    """The traces with a span of `service` that started while `sent` ran."""
    end_ms = sent["end_us"] // 1000 + 1
    lookback = end_ms - sent["start_us"] // 1000 + 1
    return _zipkin(f"/api/v2/traces?serviceName={service}&endTs={end_ms}&lookback={lookback}&limit=100000")


def _settled(read, done=None, timeout: float = 40.0):
    """Poll `read` (Envoy sends spans every few seconds) until `done` says the answer is complete, or until a
    non-empty answer stops changing."""
    deadline = time.monotonic() + timeout
    previous, stable = None, 0
    while True:
        value = read()
        stable = stable + 1 if value and value == previous else 0
        # unchanged for 10 s: longer than Envoy's 5 s span flush interval
        if (done is not None and done(value)) or stable >= 5 or time.monotonic() > deadline:
            return value
        previous = value
        time.sleep(2)


def _complete(count: int):
    """`done` for _settled: `count` traces of four spans each."""
    return lambda traces: len(traces) == count and all(len(trace) == 4 for trace in traces)


def _trace_ids(traces: list[list[dict]]) -> list[str]:
    return sorted(trace[0]["traceId"] for trace in traces)


def _four_spans(trace: list[dict]) -> bool:
    return len(trace) == 4


def _ordered(trace: list[dict]) -> list[dict]:
    """The spans of a chain, root first, each followed by its child."""
    by_parent = {span.get("parentId"): span for span in trace}
    ids = {span["id"] for span in trace}
    root = next(span for span in trace if span.get("parentId") not in ids)
    ordered = [root]
    while ordered[-1]["id"] in by_parent:
        ordered.append(by_parent[ordered[-1]["id"]])
    return ordered


def _assert_chain(trace: list[dict], hops: list[tuple]) -> list[dict]:
    """The trace is exactly `hops`: one span per Envoy hop, each the child of the one before, names from the model."""
    assert len({span["traceId"] for span in trace}) == 1
    spans = _ordered(trace)
    assert len(spans) == len(trace) == len(hops), [
        (s["localEndpoint"]["serviceName"], s.get("kind"), s["id"], s.get("parentId")) for s in trace
    ]
    for span, (service, kind, parent) in zip(spans, hops, strict=True):
        assert span["localEndpoint"]["serviceName"] == service
        assert span["kind"] == kind
        assert span["tags"]["mesh.service"] == service
        assert span["tags"]["mesh.identity"] == PLAN["services"][service]["identity"]
        if parent is not None:
            assert span["parentId"] == spans[parent]["id"]
    return spans


def _w3c(trace_id: str, span_id: str) -> dict:
    return {"traceparent": f"00-{trace_id}-{span_id}-01"}


def _apply_tracing(tracing: dict) -> float:
    """Re-apply the sidecars with mesh.tracing = `tracing`; seconds the play took."""
    started = time.monotonic()
    result = subprocess.run(
        [
            "ansible-playbook",
            "--inventory",
            os.environ["MOLECULE_INVENTORY_FILE"],
            "--extra-vars",
            json.dumps({"obs_tracing": tracing}),
            "--tags",
            "envoy_configure,envoy_run,haproxy_configure,haproxy_run",
            str(SCENARIO / "tracing.yml"),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-3000:]
    return time.monotonic() - started


# ---------------------------------------------------------------------------------------------------------------------
# The backend


def test_zipkin_runs_under_systemd_as_its_own_user() -> None:
    host = _host(ZIPKIN)
    service = host.service("zipkin")
    assert service.is_running and service.is_enabled
    pid = host.check_output("systemctl show -p MainPID --value zipkin")
    assert host.check_output(f"ps -o user= -p {pid}") == "zipkin"
    assert "-jar /usr/local/lib/zipkin/zipkin-server.jar" in host.check_output(f"ps -o args= -p {pid}")
    shown = host.check_output("systemctl show -p NoNewPrivileges,ProtectSystem zipkin").split()
    assert sorted(shown) == ["NoNewPrivileges=yes", "ProtectSystem=strict"]
    pinned = "d8326e0ed4f43855dba81228f688554706e52578a7c782d9a90b73f8680654a1"
    assert host.check_output("sha256sum /usr/local/lib/zipkin/zipkin-server.jar").split()[0] == pinned
    assert _zipkin("/health")["status"] == "UP"


# ---------------------------------------------------------------------------------------------------------------------
# 100 % sampling: every request is one trace


def test_every_request_through_web_api_cache_is_one_trace_with_a_span_per_envoy_hop() -> None:
    requests = 20
    sent = _send(WEB_CHAIN, requests)
    assert sent["statuses"] == [200] * requests
    traces = _settled(lambda: _traces("web", sent), _complete(requests))
    print(f"{requests} requests through web -> api -> cache: {len(traces)} traces in Zipkin")
    assert len(traces) == requests, "one trace per request"
    for trace in traces:
        spans = _assert_chain(trace, WEB_HOPS)
        assert "parentId" not in spans[0], "the first Envoy started the trace"
        assert spans[0]["tags"]["mesh.upstream"] == "api" and spans[2]["tags"]["mesh.upstream"] == "cache"
    # every hop of every request, and nothing else: cache's callers check it every 2 s, and no check is a trace
    assert _trace_ids(_traces("cache", sent)) == _trace_ids(traces), "cache's traces are web's"
    services = set(_zipkin("/api/v2/services"))
    assert {"api", "cache", "web"} <= services and "legacy" not in services, "HAProxy (legacy) makes no spans"


def _health_checks_passed(instance: dict) -> int:
    """How many active health checks an Envoy sidecar has passed, over all its upstream clusters."""
    stats = _host(instance["host"]).check_output(
        f"curl -sf -m 5 'http://127.0.0.1:{instance['admin_port']}/stats?filter=health_check\\.success$'"
    )
    return sum(int(line.rpartition(": ")[2]) for line in stats.splitlines())


def test_the_callers_health_checks_are_not_traced() -> None:
    # front and web (Envoy) and legacy (HAProxy) check api every 2 s, and api checks cache, since the converge
    passed = {name: _health_checks_passed(PLAN["services"][name]["instances"][0]) for name in ("front", "web", "api")}
    assert all(count > 10 for count in passed.values()), passed
    domain = f"service.{PLAN['mesh']['datacenter']}.{PLAN['mesh']['consul_domain']}"

    def traces_of(service: str, tag: str, value: str) -> list:
        query = urllib.parse.quote(f"{tag}={value}")
        return _zipkin(f"/api/v2/traces?serviceName={service}&annotationQuery={query}&lookback=86400000&limit=100000")

    # the search finds spans by tag: the requests of the test above, at api's outbound to cache
    assert traces_of("api", "mesh.upstream", "cache"), "no trace of api calling cache"
    checks = {name: traces_of(name, "http.url", f"https://{name}.{domain}/healthz") for name in ("api", "cache")}
    checks |= {agent: traces_of("api", "user_agent", agent) for agent in ("Envoy/HC", "HAProxy/HC")}
    print(f"health checks passed since the converge: {passed}; traced: {sum(map(len, checks.values()))}")
    assert checks == {"api": [], "cache": [], "Envoy/HC": [], "HAProxy/HC": []}


def test_a_w3c_traceparent_from_the_caller_is_continued() -> None:
    ids = [(secrets.token_hex(16), secrets.token_hex(8)) for _trace in range(3)]
    sent = _send(WEB_CHAIN, len(ids), [_w3c(trace_id, span_id) for trace_id, span_id in ids])
    assert sent["statuses"] == [200] * len(ids)
    for (trace_id, span_id), answer in zip(ids, sent["answers"], strict=True):
        trace = _settled(lambda trace_id=trace_id: _trace(trace_id), _four_spans)
        spans = _assert_chain(trace, WEB_HOPS)
        assert spans[0]["traceId"] == trace_id and spans[0]["parentId"] == span_id
        # cache's application received W3C and B3 context of the same trace, from api's Envoy
        cache_headers = json.loads(answer)["calls"][0]["answer"]["calls"][0]["answer"]["headers"]
        assert cache_headers["traceparent"].split("-")[1] == trace_id
        assert cache_headers["x-b3-traceid"] == trace_id


def test_b3_headers_from_the_caller_are_continued() -> None:
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    sent = _send(WEB_CHAIN, 1, [{"x-b3-traceid": trace_id, "x-b3-spanid": span_id, "x-b3-sampled": "1"}])
    assert sent["statuses"] == [200]
    trace = _settled(lambda: _trace(trace_id), _four_spans)
    spans = _assert_chain(trace, WEB_HOPS)
    assert spans[0]["parentId"] == span_id


# ---------------------------------------------------------------------------------------------------------------------
# Through HAProxy


def test_a_chain_through_haproxy_stays_one_trace() -> None:
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    sent = _send(FRONT_CHAIN, 1, [_w3c(trace_id, span_id)])
    assert sent["statuses"] == [200]
    trace = _settled(lambda: _trace(trace_id), _four_spans)
    # front's Envoy, then (HAProxy emits no span) api's Envoy as the child of front's span, then cache
    hops = [("front", "CLIENT", None), ("api", "SERVER", 0), ("api", "CLIENT", 1), ("cache", "SERVER", 2)]
    spans = _assert_chain(trace, hops)
    assert spans[0]["parentId"] == span_id
    # legacy's application got the context front's Envoy sent, unchanged by HAProxy's inbound
    legacy = json.loads(sent["answers"][0])["calls"][0]["answer"]
    assert legacy["service"] == "legacy"
    assert legacy["headers"]["traceparent"] == f"00-{trace_id}-{spans[0]['id']}-01"
    assert legacy["headers"]["x-b3-spanid"] == spans[0]["id"]


def test_haproxy_adds_a_request_id_only_when_there_is_none() -> None:
    host = _host("vmmesh-obs3")  # legacy's HAProxy: out.legacy.api on 9201
    answer = json.loads(host.check_output("curl -sf -m 5 http://127.0.0.1:9201/plain"))
    # HAProxy's unique-id-format: client ip:port, frontend ip:port, time, request counter and pid, in hex
    assert re.fullmatch(HAPROXY_REQUEST_ID, answer["headers"]["x-request-id"]), answer
    kept = json.loads(host.check_output("curl -sf -m 5 -H 'x-request-id: keep-me-42' http://127.0.0.1:9201/plain"))
    assert kept["headers"]["x-request-id"] == "keep-me-42"


# ---------------------------------------------------------------------------------------------------------------------
# The report links each traced edge to its trace search


def test_the_report_links_each_edge_to_its_trace_search() -> None:
    report = json.loads((EPHEMERAL / "report" / "report.json").read_text())
    backend = PLAN["hosts"][ZIPKIN]["address"]
    links = {(edge["source"], edge["destination"]): edge["traces_url"] for edge in report["edges"]}
    assert set(links) == {("front", "api"), ("front", "legacy"), ("legacy", "api"), ("web", "api"), ("api", "cache")}
    for (source, destination), url in links.items():
        if source == "legacy":
            assert url is None, "HAProxy emits no spans: no search link"
            continue
        parsed = urllib.parse.urlsplit(url)
        assert (parsed.scheme, parsed.netloc, parsed.path) == ("http", f"{backend}:9411", "/zipkin/")
        # the UI's query is the API's: it finds this edge's traces
        found = _zipkin(f"/api/v2/traces?{parsed.query}&limit=1000")
        assert found, url
        for trace in found:
            calls = [
                span
                for span in trace
                if span["localEndpoint"]["serviceName"] == source and span["tags"].get("mesh.upstream") == destination
            ]
            assert calls, f"{url}: a trace without {source}'s call to {destination}"
            if PLAN["services"][destination]["sidecar"] == "envoy":  # an HAProxy callee makes no span
                assert destination in {span["localEndpoint"]["serviceName"] for span in trace}


# ---------------------------------------------------------------------------------------------------------------------
# 10 % sampling, then tracing off under load


def test_ten_percent_sampling_traces_about_ten_percent() -> None:
    took = _apply_tracing({"enabled": True, "sampling": 10, "backend": BACKEND})
    print(f"sidecars re-applied with 10 % sampling in {took:.0f}s")
    lds = _host(CALLER).file("/etc/envoy/web/lds.yaml").content_string
    assert "random_sampling:\n" in lds and "value: 10.0" in lds
    time.sleep(2)  # the renamed lds.yaml is applied within a second
    requests = 400
    sent = _send(WEB_CHAIN, requests)
    assert sent["statuses"] == [200] * requests

    # Both ends of the chain, read together until they hold the same traces, or until the answer stops changing:
    # each Envoy flushes its spans on its own timer (every 5 s, or 5 spans), so either end may lag the other by a
    # flush; cache holding a trace whose web span is still buffered is not a trace of its own.
    def both_ends() -> tuple[list, list]:
        return _traces("web", sent), _traces("cache", sent)

    def agree(ends: tuple[list, list]) -> bool:
        web, cache = ends
        return bool(web) and all(map(_four_spans, web)) and _trace_ids(web) == _trace_ids(cache)

    traces, at_cache = _settled(both_ends, done=agree, timeout=90)
    ratio = len(traces) / requests
    print(f"10 % sampling: {len(traces)} of {requests} requests traced ({ratio:.1%})")
    # Binomial(400, 0.1): mean 40, standard deviation 6. 13..67 is the mean +- 4.5 standard deviations: a correct
    # sampler falls outside it with a probability below 1e-5, while 0 %, 1 %, 25 % or 100 % land far outside.
    assert 13 <= len(traces) <= 67
    # the first Envoy decides and the later hops follow it: every request it sampled is one complete chain
    for trace in traces:
        _assert_chain(trace, WEB_HOPS)
    # every request web's Envoy sampled reached cache in the same trace, and cache has no trace of its own
    assert _trace_ids(at_cache) == _trace_ids(traces), "cache's traces are the ones web sampled"


def test_turning_tracing_off_under_load_removes_it_from_every_sidecar_and_drops_no_request() -> None:
    caller = _host(CALLER)
    caller.run_expect([0], "rm -f /root/trace-load.stop /root/trace-load-*.log")
    for name, url in (("web", WEB_CHAIN), ("front", FRONT_CHAIN)):
        caller.run_expect(
            [0],
            f"systemd-run --unit vmmesh-trace-load-{name} /bin/sh -c "
            f"'/usr/local/bin/vmmesh-send {url} --until /root/trace-load.stop > /root/trace-load-{name}.log'",
        )
    try:
        time.sleep(2)
        took = _apply_tracing({"enabled": False, "sampling": 10, "backend": BACKEND})
        time.sleep(3)
    finally:
        caller.run("touch /root/trace-load.stop")
        time.sleep(2)
    statuses = caller.check_output("cat /root/trace-load-web.log /root/trace-load-front.log").split()
    failed = [status for status in statuses if status != "200"]
    print(f"tracing turned off in {took:.0f}s under load: {len(statuses)} requests, {len(failed)} failed")
    assert len(statuses) >= 100, "the load ran during the change"
    assert failed == []
    for name in HOSTS:
        host = _host(name)
        envoy = host.run("grep -rlE 'zipkin|tracing|random_sampling' /etc/envoy")
        assert envoy.rc == 1 and envoy.stdout == "", f"{name}: tracing left in {envoy.stdout}"
    haproxy = _host("vmmesh-obs3").file("/etc/haproxy/haproxy.cfg").content_string  # legacy's HAProxy
    assert "http-request set-header x-request-id" not in haproxy and "unique-id" not in haproxy
    # and in what the running Envoys hold
    for service, details in PLAN["services"].items():
        for instance in details["instances"]:
            if instance["sidecar"] != "envoy":
                continue
            admin = f"http://127.0.0.1:{instance['admin_port']}/config_dump?resource="
            live = (
                _host(instance["host"])
                .check_output(
                    f"curl -sf -m 5 '{admin}dynamic_listeners'; curl -sf -m 5 '{admin}dynamic_active_clusters'"
                )
                .lower()
            )
            assert '"name": "inbound"' in live and "local_app" in live, service
            for word in ("zipkin", "random_sampling", "tracing_backend", "mesh.identity"):
                assert word not in live, f"{service}: {word} in the running configuration"
    sent = _send(WEB_CHAIN, 20)
    assert sent["statuses"] == [200] * 20
    time.sleep(7)  # longer than Envoy's span flush interval
    assert _traces("web", sent) == [], "no span after tracing was turned off"
