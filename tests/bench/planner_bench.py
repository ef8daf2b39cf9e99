"""Benchmark of the mesh compiler: plan + render for meshes of 100, 1,000 and 10,000 services.

Each service has 3 instances and 3 upstreams; services are spread over N hosts (3 instances of 3 different services
per host on average), intentions allow exactly the declared upstreams, half the services use Envoy and half HAProxy.
Reports, per size, the seconds to validate and plan, to render every file of every host, and the peak traced memory;
then the 10k/1k time ratio (a quadratic step would show as ~100). Writes tests/bench/results/planner.json.

Not a timed test: run it with ``.venv/bin/python tests/bench/planner_bench.py`` (or ``make bench``).
Options: ``--sizes 100,1000`` to choose sizes, ``--repeat N`` to keep the best of N runs (default 3), ``--no-memory``
to skip the tracemalloc pass (tracing slows Python down, so times are measured in separate, untraced runs).
Times are reported as wall-clock and as CPU time of this process (one core); the ratio uses CPU time, which other
load on the machine disturbs less.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sys
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
COLLECTIONS = ROOT / ".cache" / "collections"
LINK = COLLECTIONS / "ansible_collections" / "vmmesh" / "mesh"
if not LINK.exists():
    LINK.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(ROOT, LINK)
sys.path.insert(0, str(COLLECTIONS))

from ansible_collections.vmmesh.mesh.plugins.module_utils.mesh_compiler import (  # noqa: E402
    compile_mesh,
    render_bundle,
)

RESULTS = ROOT / "tests" / "bench" / "results" / "planner.json"
INSTANCES = 3
UPSTREAMS = 3


def generate(services: int) -> tuple[dict, dict, dict]:
    """``(mesh, groups, hostvars)`` for a mesh of ``services`` services."""
    hosts = [f"h{index:05d}" for index in range(services)]
    groups: dict[str, list[str]] = {"all": hosts, "ungrouped": []}
    hostvars = {
        host: {"mesh_address": f"10.{index // 65536}.{index // 256 % 256}.{index % 256}"}
        for index, host in enumerate(hosts)
    }
    definitions = {}
    intentions = []
    for index in range(services):
        name = f"svc{index:05d}"
        group = f"g{index:05d}"
        groups[group] = [hosts[(index + offset) % services] for offset in range(INSTANCES)]
        upstreams = []
        for offset in range(1, UPSTREAMS + 1):
            target = f"svc{(index + offset) % services:05d}"
            upstreams.append({"service": target, "local_port": 10000 + offset * 1000 + index % 1000})
            intentions.append({"source": name, "destination": target, "action": "allow"})
        definitions[name] = {
            "port": 8000 + index % 1000,
            "protocol": "http" if index % 4 else "grpc",
            "hosts": group,
            "sidecar": "envoy" if index % 2 else "haproxy",
            "upstreams": upstreams,
        }
    mesh = {"name": "bench", "discovery": "consul", "services": definitions, "intentions": intentions}
    return mesh, groups, hostvars


def run_once(services: int) -> dict:
    mesh, groups, hostvars = generate(services)
    # The input lives as long as the run, as it would in Ansible: collect earlier garbage and move the input out of
    # the collector's way so that the timings measure the compiler, not re-scans of the generated input.
    gc.collect()
    gc.freeze()
    start, start_cpu = time.perf_counter(), time.process_time()
    plan = compile_mesh(mesh, groups, hostvars)
    planned, planned_cpu = time.perf_counter(), time.process_time()
    bundle = render_bundle(plan)
    rendered, rendered_cpu = time.perf_counter(), time.process_time()
    gc.unfreeze()
    return {
        "plan_seconds": planned - start,
        "render_seconds": rendered - planned,
        "total_seconds": rendered - start,
        "plan_cpu_seconds": planned_cpu - start_cpu,
        "render_cpu_seconds": rendered_cpu - planned_cpu,
        "total_cpu_seconds": rendered_cpu - start_cpu,
        "files": len(bundle),
        "bytes": sum(len(content) for content in bundle.values()),
    }


def peak_memory(services: int) -> int:
    mesh, groups, hostvars = generate(services)
    gc.collect()
    tracemalloc.start()
    plan = compile_mesh(mesh, groups, hostvars)
    bundle = render_bundle(plan)
    _current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del plan, bundle
    return peak


def machine() -> dict:
    import ansible

    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "ansible_core": ansible.__version__ if hasattr(ansible, "__version__") else "",
        "platform": platform.platform(),
        "cpu": cpu,
        "cpus": os.cpu_count(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,1000,10000")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--output", default=str(RESULTS))
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    results = []
    for size in sizes:
        runs = [run_once(size) for _run in range(args.repeat)]
        best = min(runs, key=lambda run: run["total_cpu_seconds"])
        entry = {"services": size, "instances": size * INSTANCES, "upstreams": size * UPSTREAMS, **best}
        if not args.no_memory:
            entry["peak_memory_mib"] = round(peak_memory(size) / 1048576, 1)
        for key in list(entry):
            if key.endswith("_seconds"):
                entry[key] = round(entry[key], 3)
        results.append(entry)
        print(
            f"{size:>6} services: plan {entry['plan_seconds']:.3f} s, render {entry['render_seconds']:.3f} s, "
            f"total {entry['total_seconds']:.3f} s wall / {entry['total_cpu_seconds']:.3f} s CPU, "
            f"{entry['files']} files ({entry['bytes'] / 1e6:.0f} MB), peak {entry.get('peak_memory_mib', '-')} MiB",
            flush=True,
        )
    by_size = {entry["services"]: entry for entry in results}
    report: dict = {"machine": machine(), "results": results}
    if 1000 in by_size and 10000 in by_size:
        ratio_cpu = by_size[10000]["total_cpu_seconds"] / by_size[1000]["total_cpu_seconds"]
        ratio_wall = by_size[10000]["total_seconds"] / by_size[1000]["total_seconds"]
        report["ratio_10k_1k"] = round(ratio_cpu, 2)
        report["ratio_10k_1k_wall"] = round(ratio_wall, 2)
        print(f"10k/1k time ratio: {ratio_cpu:.2f} CPU, {ratio_wall:.2f} wall (target <= 12)")
    if 1000 in by_size:
        report["target_1k_2s_met"] = by_size[1000]["total_cpu_seconds"] <= 2.0
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
