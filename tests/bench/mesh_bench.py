"""Benchmark of the data path: what a pair of vmmesh sidecars adds to a call, next to a direct connection.

On the benchmarks' lab (tests/bench/mesh/hosts.yml: a Consul server, bench1 with the load generator, bench2 with
the echo servers), converged with playbooks/site.yml as a user's mesh is, fortio sends HTTP/1.1 POSTs with a 1 KB
body (echoed back, so 1 KB each way) over keep-alive connections at a fixed rate, along six HTTP paths in the same
run:

    direct           bench1 -> bench2's echo server, plain HTTP, no sidecar
    envoy-envoy      Envoy -> Envoy, mTLS between the sidecars
    envoy-haproxy    Envoy -> HAProxy
    haproxy-haproxy  HAProxy -> HAProxy
    haproxy-envoy    HAProxy -> Envoy
    consul-connect   Consul's own service mesh: `consul connect envoy` sidecars, Consul's CA and intentions (the peer)

three TCP paths, 1 KB sent and echoed per request over persistent connections: direct-tcp, envoy-envoy-tcp
and haproxy-haproxy-tcp; and three gRPC paths (HTTP/2 on every hop), fortio's unary ping with a 1 KB payload echoed
back: direct-grpc, envoy-envoy-grpc and haproxy-haproxy-grpc.

Each run warms every path up (discarded), then measures each path in turn; the order rotates from run to run so that
drift on the shared machine spreads over the paths. Per path and run it records fortio's p50, p90, p99 and p99.9,
the requests that failed (no 200, or no echo on a TCP or gRPC path), the CPU seconds of each sidecar on the path per
1,000 requests (from /proc: the lab hosts have no per-unit CPU accounting), the TLS connections the callee's sidecar
accepted per 1,000 requests, and at the end each sidecar's peak RSS. Reports medians over the runs and the
difference to the direct path of the same protocol, with the machine and versions, as JSON, a Markdown table and a
chart (chart.py) in docs/benchmarks/.

Not a timed test: run it with ``make bench-mesh`` (or ``.venv/bin/python tests/bench/mesh_bench.py``).
Options: ``--rate`` requests/s (default 500), ``--connections`` (default 8), ``--seconds`` per measurement
(default 20), ``--warmup`` seconds (default 5), ``--runs`` (default 3), ``--keep`` to leave the lab up,
``--reuse`` to measure on a lab left up by ``--keep`` without converging it again, ``--paths direct,envoy-envoy``
to measure only those, ``--max-rate`` to also search each path's highest rate with p99 under ``--p99-limit``
(default 10 ms).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml
from planner_bench import machine

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "tests" / "bench" / "mesh"
INVENTORY = BENCH / "hosts.yml"
OUTPUT = ROOT / "docs" / "benchmarks"
LAB = [sys.executable, str(ROOT / "lab" / "lab"), "--inventory", str(INVENTORY)]
LOAD, ECHO = "vmmesh-bench1", "vmmesh-bench2"
PERCENTILES = (50.0, 90.0, 99.0, 99.9)
BODY_BYTES = 1024
# consul_connect.yml: load-connect's upstream listener, and the admin port of each `consul connect envoy` sidecar.
CONNECT_LOCAL_PORT = 9301
CONNECT_ADMIN_PORT = 19300


def log(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def run(cmd: list[str], **kwargs) -> str:
    result = subprocess.run(cmd, text=True, capture_output=True, check=False, **kwargs)
    if result.returncode != 0:
        raise SystemExit(
            f"bench: `{' '.join(cmd[:6])} ...` exited {result.returncode}:\n{(result.stdout + result.stderr)[-3000:]}"
        )
    return result.stdout


def on(host: str, script: str) -> str:
    return run(["podman", "exec", host, "sh", "-c", script])


def paths(mesh: dict, plan: dict) -> dict[str, dict]:
    """Each path: the URL fortio calls on bench1 and the sidecars it crosses, as (host, sidecar, service, admin)."""

    def instance(service: str) -> dict:
        (found,) = plan["services"][service]["instances"]
        return found

    def sidecar(service: str) -> tuple[str, str, str, int]:
        at = instance(service)
        return at["host"], at["sidecar"], service, at.get("admin_port") or 0

    address = plan["hosts"][ECHO]["address"]
    # Per protocol: how fortio is pointed at an address and port, the suffix of the path's name, the direct target.
    kinds = {
        "http": ("http://{}:{}/echo", "", "echo-envoy"),
        "tcp": ("tcp://{}:{}", "-tcp", "echo-tcp-envoy"),
        "grpc": ("grpc://{}:{}", "-grpc", "echo-grpc-envoy"),
    }
    found: dict[str, dict[str, dict]] = {kind: {} for kind in kinds}
    for kind, (url, suffix, direct) in kinds.items():
        found[kind][f"direct{suffix}"] = {"url": url.format(address, instance(direct)["port"]), "sidecars": []}
    for caller in ("load-envoy", "load-haproxy"):
        for upstream in mesh["services"][caller]["upstreams"]:
            callee = upstream["service"]
            kind = plan["services"][callee]["protocol"]
            url, suffix, _direct = kinds[kind]
            found[kind][f"{instance(caller)['sidecar']}-{instance(callee)['sidecar']}{suffix}"] = {
                "url": url.format("127.0.0.1", upstream["local_port"]),
                "sidecars": [sidecar(caller), sidecar(callee)],
            }
    # The peer: Consul's own Envoy integration (mesh/consul_connect.yml), one admin port per host.
    found["http"]["consul-connect"] = {
        "url": f"http://127.0.0.1:{CONNECT_LOCAL_PORT}/echo",
        "sidecars": [
            (LOAD, "consul-envoy", "load-connect", CONNECT_ADMIN_PORT),
            (ECHO, "consul-envoy", "echo-connect", CONNECT_ADMIN_PORT),
        ],
    }
    return found["http"] | found["tcp"] | found["grpc"]


def unit(sidecar: str, service: str) -> str:
    return "haproxy.service" if sidecar == "haproxy" else f"{sidecar}@{service}.service"


def pids(host: str, sidecar: str, service: str) -> list[str]:
    """The sidecar's processes: the unit's main process and its children (HAProxy's workers).

    vmmesh's Envoy units run Envoy under the hot restarter (roles/envoy/files/envoy-hot-restarter.py), which is left
    out: only its Envoy children count. The lab hosts see cgroup v1 without per-unit accounting, so CPU and memory are
    read from /proc.
    """
    main = on(host, f"systemctl show -P MainPID {unit(sidecar, service)}").strip()
    children = on(host, f"pgrep -P {main} || true").split()
    return children if sidecar == "envoy" else [main, *children]


def cpu_seconds(host: str, sidecar: str, service: str) -> float:
    """CPU time (user and system, every thread) of the sidecar's processes so far."""
    out = on(host, f"cat {' '.join(f'/proc/{pid}/stat' for pid in pids(host, sidecar, service))}; getconf CLK_TCK")
    *stats, ticks = out.splitlines()
    # utime and stime are fields 14 and 15; the command name before them may hold spaces, so count after ")".
    return sum(int(f) for line in stats for f in line.rsplit(")", 1)[1].split()[11:13]) / int(ticks)


def peak_rss_mb(host: str, sidecar: str, service: str) -> float:
    """The sum of the peak resident sizes (VmHWM) of the sidecar's processes."""
    out = on(host, f"grep -h VmHWM {' '.join(f'/proc/{pid}/status' for pid in pids(host, sidecar, service))}")
    return sum(int(line.split()[1]) for line in out.splitlines()) / 1024


def tls_accepted(host: str, sidecar: str, admin_port: int) -> int:
    """TLS connections the callee's sidecar accepted so far (every inbound TLS listener, or every HAProxy frontend)."""
    if sidecar in ("envoy", "consul-envoy"):
        out = on(host, f"curl -sf -m 5 'http://127.0.0.1:{admin_port}/stats?filter=^listener\\..*ssl\\.handshake$'")
        return sum(int(line.rsplit(":", 1)[1]) for line in out.splitlines() if line.strip())
    out = on(host, "echo 'show info' | nc -U -N /run/haproxy/admin.sock")
    return next(int(line.split(":", 1)[1]) for line in out.splitlines() if line.startswith("CumSslConns:"))


def fortio(url: str, rate: int, connections: int, seconds: float) -> dict:
    # gRPC: fortio's ping (a unary call whose payload comes back) to host:port, over one HTTP/2 connection per -c.
    target = f"-grpc -ping {url.removeprefix('grpc://')}" if url.startswith("grpc://") else url
    out = on(
        LOAD,
        f"fortio load -quiet -json - -qps {rate} -c {connections} -t {seconds}s -payload-size {BODY_BYTES} -r 0.00001 "
        f"-p {','.join(str(p) for p in PERCENTILES)} -allow-initial-errors {target}",
    )
    return json.loads(out[out.index("{") :])


def answered(result: dict) -> int:
    """Requests answered in full: HTTP 200, or fortio's OK (TCP) or SERVING (gRPC ping): the payload came back."""
    return sum(result["RetCodes"].get(code, 0) for code in ("200", "OK", "SERVING"))


def measure(path: dict, rate: int, connections: int, seconds: float) -> dict:
    sidecars = path["sidecars"]
    callee = sidecars[-1] if sidecars else None
    cpu_before = [cpu_seconds(host, kind, service) for host, kind, service, _admin in sidecars]
    tls_before = tls_accepted(callee[0], callee[1], callee[3]) if callee else 0
    result = fortio(path["url"], rate, connections, seconds)
    cpu_after = [cpu_seconds(host, kind, service) for host, kind, service, _admin in sidecars]
    tls_after = tls_accepted(callee[0], callee[1], callee[3]) if callee else 0
    histogram = result["DurationHistogram"]
    requests = histogram["Count"]
    per_thousand = 1000 / requests if requests else 0
    return {
        "requests": requests,
        "qps": result["ActualQPS"],
        "failed": requests - answered(result),
        "latency_ms": {f"p{p['Percentile']:g}": p["Value"] * 1000 for p in histogram["Percentiles"]},
        "cpu_s_per_1k": {
            f"{kind}:{service}": (after - before) * per_thousand
            for (_host, kind, service, _admin), before, after in zip(sidecars, cpu_before, cpu_after, strict=True)
        },
        "tls_per_1k": (tls_after - tls_before) * per_thousand,
    }


def highest_rate(url: str, start: int, connections: int, seconds: float, limit_ms: float) -> dict:
    """The highest rate of a geometric series (x1.5 from `start`) that fortio sustains with p99 under `limit_ms`.

    A step passes when fortio reaches 95 % of the asked rate, every request answers 200 and p99 < limit_ms; the
    search stops at the first step that fails. Returns the passing rate (0 when even `start` fails) and every step.
    """
    steps, rate, passed = [], start, 0
    while True:
        result = fortio(url, rate, connections, seconds)
        p99 = next(p["Value"] for p in result["DurationHistogram"]["Percentiles"] if p["Percentile"] == 99) * 1000
        count = result["DurationHistogram"]["Count"]
        ok = result["ActualQPS"] >= 0.95 * rate and answered(result) == count and p99 < limit_ms
        steps.append({"rate": rate, "qps": result["ActualQPS"], "p99_ms": p99, "passed": ok})
        if not ok:
            return {"rate": passed, "steps": steps}
        passed, rate = rate, int(rate * 1.5)


def median_of(runs: list[dict]) -> dict:
    med = statistics.median
    return {
        "requests": sum(r["requests"] for r in runs),
        "failed": sum(r["failed"] for r in runs),
        "qps": med([r["qps"] for r in runs]),
        "latency_ms": {key: med([r["latency_ms"][key] for r in runs]) for key in runs[0]["latency_ms"]},
        "cpu_s_per_1k": {key: med([r["cpu_s_per_1k"][key] for r in runs]) for key in runs[0]["cpu_s_per_1k"]},
        "tls_per_1k": med([r["tls_per_1k"] for r in runs]),
    }


def lab_versions() -> dict:
    """What every lab benchmark records: the pinned Envoy and Consul, this machine's kernel and podman."""
    pins = yaml.safe_load((ROOT / "roles" / "_common" / "vars" / "versions.yml").read_text())["_vmmesh_versions"]
    return {
        "envoy": pins["envoy"]["version"],
        "consul": pins["consul"]["version"],
        "kernel": run(["uname", "-r"]).strip(),
        "podman": run(["podman", "--version"]).split()[-1],
    }


def versions() -> dict:
    return lab_versions() | {
        "haproxy": on(ECHO, "haproxy -v | head -1").split()[2],
        "fortio": on(LOAD, "fortio version").strip(),
    }


RECAP = re.compile(r"^(\S+)\s+: ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)\s+skipped=(\d+)", re.M)
COUNTS = ("ok", "changed", "unreachable", "failed", "skipped")


def recap(output: str) -> dict[str, dict[str, int]]:
    """ansible-playbook's PLAY RECAP counts per host."""
    return {match[1]: dict(zip(COUNTS, map(int, match.groups()[1:]), strict=True)) for match in RECAP.finditer(output)}


def markdown(report: dict) -> str:
    settings = report["settings"]
    lines = [
        "# Data-path benchmark",
        "",
        f"Measured {report['date']} on the benchmarks' lab (`make bench-mesh`): {report['machine']['cpus']} cores "
        f"({report['machine']['cpu']}), every lab host a container on the same cores. HTTP/1.1 POST with a "
        f"{BODY_BYTES}-byte body echoed back, keep-alive (TCP paths: {BODY_BYTES} bytes sent and echoed per request "
        f"over persistent connections; gRPC paths: fortio's unary ping with a {BODY_BYTES}-byte payload echoed back, "
        f"HTTP/2 on every hop), {settings['rate']} requests/s over "
        f"{settings['connections']} connections, {settings['seconds']} s per measurement after a "
        f"{settings['warmup']} s warm-up, median of {settings['runs']} runs. Versions: "
        + ", ".join(f"{k} {v}" for k, v in report["versions"].items())
        + ".",
        "",
        "| Path | p50 ms | p90 ms | p99 ms | p99.9 ms | added p50 ms | added p99 ms | sidecar CPU s / 1k req "
        "| TLS conns / 1k req | peak RSS MB | failed |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | --- | ---: |",
    ]
    none = {"p50": 0.0, "p99": 0.0}
    for name, path in report["paths"].items():
        # Each path against the direct path of its protocol.
        baseline = next((f"direct-{kind}" for kind in ("tcp", "grpc") if name.endswith(f"-{kind}")), "direct")
        direct = report["paths"].get(baseline, {}).get("median", {}).get("latency_ms", none)
        median = path["median"]
        latency = median["latency_ms"]
        cpu = ", ".join(f"{k.split(':')[0]} {v:.3f}" for k, v in median["cpu_s_per_1k"].items()) or "-"
        rss = ", ".join(f"{k.split(':')[0]} {v:.1f}" for k, v in path.get("peak_rss_mb", {}).items()) or "-"
        tls = f"{median['tls_per_1k']:.2f}" if path["sidecars"] else "-"
        lines.append(
            f"| {name} | {latency['p50']:.3f} | {latency['p90']:.3f} | {latency['p99']:.3f} | {latency['p99.9']:.3f} "
            f"| {latency['p50'] - direct['p50']:+.3f} | {latency['p99'] - direct['p99']:+.3f} | {cpu} | {tls} "
            f"| {rss} | {median['failed']} |"
        )
    searched = {name: path["highest_rate"] for name, path in report["paths"].items() if "highest_rate" in path}
    if searched:
        limit = settings["p99_limit"]
        lines += [
            "",
            f"Highest rate with p99 under {limit:g} ms ({settings['connections']} connections, steps of x1.5 from "
            f"{settings['rate']}/s, {settings['seconds'] / 2:g} s each; the first failing step is shown):",
            "",
            "| Path | highest rate/s | first failing step |",
            "| --- | ---: | --- |",
        ]
        for name, found in searched.items():
            failed = found["steps"][-1]
            lines.append(
                f"| {name} | {found['rate']} | {failed['rate']}/s asked: {failed['qps']:.0f}/s reached, "
                f"p99 {failed['p99_ms']:.2f} ms |"
            )
    converge = report.get("converge_seconds") or {}
    if converge:
        lines += [
            "",
            f"Converge of the benchmarks' 3 lab hosts: `site.yml` took {converge['site_first']:.0f} s on fresh hosts "
            f"and {converge['site_noop']:.0f} s when run again, "
            + ("with nothing changed." if converge["site_noop_unchanged"] else "**and the re-run changed something**."),
        ]
    lines += [
        "",
        "CPU and RSS are per sidecar on the path, caller first. Peak RSS is the sum of the peak resident sizes of "
        "the sidecar unit's processes over the whole benchmark (an HAProxy unit serves every HAProxy service of its "
        "host). TLS connections are counted where the callee's sidecar accepts them; on a TCP path each client "
        "connection is one TLS connection between the sidecars. Added: against `direct`, or `direct-tcp` and "
        "`direct-grpc` for the TCP and gRPC paths. Failed: requests without an HTTP 200, or on a TCP or gRPC path "
        "without their echo.",
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=500)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--warmup", type=float, default=5)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--paths", default="", help="comma-separated paths to measure (default: all)")
    parser.add_argument(
        "--max-rate", action="store_true", help="also search each path's highest rate with p99 under --p99-limit"
    )
    parser.add_argument("--p99-limit", type=float, default=10.0, help="milliseconds (default 10)")
    parser.add_argument("--keep", action="store_true", help="leave the lab up afterwards")
    parser.add_argument("--reuse", action="store_true", help="measure on the lab left up, without converging it")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args()

    cache = Path(os.environ.get("VMMESH_CACHE", Path.home() / ".cache" / "vmmesh"))
    env = dict(
        os.environ,
        VMMESH_LAB_STATE=str(cache / "bench-state"),
        VMMESH_FORTIO=run([*LAB, "fortio"]).strip().splitlines()[-1],
        ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
    )
    render = ROOT / ".build" / "bench"
    playbook = ["ansible-playbook", "-i", str(INVENTORY)]
    site = ROOT / "playbooks" / "site.yml"
    converge: dict[str, float | bool] = {}
    try:
        if not args.reuse:
            log("bringing up the benchmarks' lab")
            subprocess.run([*LAB, "up"], check=True)
            for book, label in ((BENCH / "apps.yml", "apps"), (site, "site_first"), (site, "site_noop")):
                log(f"applying {book.relative_to(ROOT)}")
                started = time.monotonic()
                out = run([*playbook, str(book)], env=env)
                converge[label] = round(time.monotonic() - started, 1)
                log(f"{book.name} took {converge[label]:.0f} s")
            # The re-run is the no-op one: nothing may change.
            converge["site_noop_unchanged"] = all(counts["changed"] == 0 for counts in recap(out).values())
            run([*playbook, str(BENCH / "consul_connect.yml")], env=env)
        run([*playbook, str(ROOT / "playbooks" / "render.yml"), "-e", f"mesh_render_dir={render}"], env=env)
        plan = json.loads((render / "plan.json").read_text())
        mesh = yaml.safe_load((BENCH / "group_vars" / "all" / "mesh.yml").read_text())["mesh"]
        found = paths(mesh, plan)
        if args.paths:
            found = {name: found[name] for name in args.paths.split(",")}
        names = list(found)
        log(f"warming up {', '.join(names)}")
        for name in names:
            fortio(found[name]["url"], args.rate, args.connections, args.warmup)
        runs: dict[str, list[dict]] = {name: [] for name in names}
        for number in range(args.runs):
            order = names[number % len(names) :] + names[: number % len(names)]
            for name in order:
                result = measure(found[name], args.rate, args.connections, args.seconds)
                runs[name].append(result)
                log(
                    f"run {number + 1}/{args.runs} {name}: p50 {result['latency_ms']['p50']:.3f} ms, "
                    f"p99 {result['latency_ms']['p99']:.3f} ms, {result['failed']} failed"
                )
        # Peak RSS at the benchmark's rate, before the search drives the sidecars harder.
        rss = {
            name: {
                f"{kind}:{service}": peak_rss_mb(host, kind, service)
                for host, kind, service, _admin in found[name]["sidecars"]
            }
            for name in names
        }
        highest = {}
        if args.max_rate:
            for name in names:
                highest[name] = highest_rate(
                    found[name]["url"], args.rate, args.connections, args.seconds / 2, args.p99_limit
                )
                log(f"{name}: highest rate with p99 under {args.p99_limit:g} ms: {highest[name]['rate']}/s")
        report = {
            "date": time.strftime("%Y-%m-%d", time.gmtime()),
            "machine": machine(),
            "versions": versions(),
            "settings": vars(args) | {"output": str(args.output), "body_bytes": BODY_BYTES},
            "converge_seconds": converge,
            "paths": {
                name: {
                    "url": found[name]["url"],
                    "sidecars": [f"{kind}:{service}@{host}" for host, kind, service, _admin in found[name]["sidecars"]],
                    "runs": runs[name],
                    "median": median_of(runs[name]),
                    "peak_rss_mb": rss[name],
                }
                | ({"highest_rate": highest[name]} if name in highest else {})
                for name in names
            },
        }
    finally:
        if not args.keep:
            log("tearing the benchmarks' lab down")
            subprocess.run([*LAB, "down"], check=False)
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "data-path.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.output / "data-path.md").write_text(markdown(report))
    try:
        from chart import draw
    except ImportError:
        log("no chart: matplotlib is missing (make bench installs requirements-bench.txt)")
    else:
        draw(report, args.output / "data-path.png")
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
