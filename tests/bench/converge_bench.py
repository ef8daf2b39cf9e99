"""Benchmark of the converge: how long playbooks/site.yml takes on 1, 5 and 20 lab hosts, first run and no-op re-run.

For each size the harness brings up that many fresh lab hosts (tests/bench/converge: a generated inventory, the
lab's settings from inventories/lab), one Consul server among them, and a mesh with one service per host, Envoy and
HAProxy in turn, each calling the next host's service over mTLS (a ring), fortio echo servers as the applications
(tests/bench/mesh/apps.yml). Then it times ``site.yml`` from a fresh controller state (new mesh CA, new Consul
secrets) and once more on the converged hosts, where nothing may change, and records the tasks each run executed.

It measures two ways of reaching the hosts:

    ssh      OpenSSH, as real VMs are reached, with the settings of the example inventories/production/ansible.cfg
             (pipelining, ControlPersist, forks). tests/bench/converge/ssh.yml installs sshd and the benchmark's key.
    podman   the lab's own connection (lab/plugins/connection/podman.py: one `podman inspect` per task, each command
             through nsenter with the module on its stdin), with the checkout's ansible.cfg; what every molecule
             scenario and `make demo` pay.

Writes docs/benchmarks/converge.json and converge.md. Not a timed test: run it with ``make bench-converge`` (or
``.venv/bin/python tests/bench/converge_bench.py``). Options: ``--sizes 1,5,20``, ``--connections ssh,podman``,
``--output DIR``, ``--keep`` to leave the last lab up. A run of part of the matrix keeps the other rows of the
report already in ``--output`` (each row says when it was measured); ``--fresh`` drops them.
"""

from __future__ import annotations

import argparse
import configparser
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml
from mesh_bench import lab_versions, log, recap, run
from planner_bench import machine

ROOT = Path(__file__).resolve().parents[2]
HERE = ROOT / "tests" / "bench" / "converge"
APPS = ROOT / "tests" / "bench" / "mesh" / "apps.yml"
SITE = ROOT / "playbooks" / "site.yml"
OUTPUT = ROOT / "docs" / "benchmarks"
WORK = ROOT / ".build" / "bench-converge"
NETWORK, SUBNET, PREFIX = "vmmesh-conv", "10.89.72.0/24", "10.89.72."
CONFIGS = {
    "ssh": ROOT / "inventories" / "production" / "ansible.cfg",
    "podman": ROOT / "ansible.cfg",
}


def host_name(number: int) -> str:
    return f"vmmesh-conv{number:02d}"


def mesh_model(size: int) -> dict:
    """One service per host, Envoy and HAProxy in turn, each calling the next host's service (a ring)."""
    services: dict[str, dict] = {}
    intentions = []
    for number in range(1, size + 1):
        name = f"svc{number:02d}"
        service: dict = {
            "port": 8081,
            "hosts": [host_name(number)],
            "sidecar": "envoy" if number % 2 else "haproxy",
            "health_check": {"path": "/healthz", "interval": "5s", "timeout": "1s"},
        }
        if size > 1:
            callee = f"svc{number % size + 1:02d}"
            service["upstreams"] = [{"service": callee, "local_port": 9101}]
            intentions.append({"source": name, "destination": callee, "action": "allow"})
        services[name] = service
    return {
        "name": "converge",
        "datacenter": "dc1",
        "discovery": "static",
        "default_policy": "deny",
        "metrics": {"expose": True},
        "services": services,
        "intentions": intentions,
    }


def inventory(size: int, connection: str, key: Path) -> dict:
    """A lab inventory of `size` hosts: the first is the Consul server, every host runs one service."""
    hosts = {host_name(number): {"mesh_address": f"{PREFIX}{10 + number}"} for number in range(1, size + 1)}
    if connection == "ssh":
        for hostvars in hosts.values():
            hostvars["ansible_host"] = hostvars["mesh_address"]
        reach = {
            "ansible_connection": "ssh",
            "ansible_user": "root",
            "ansible_ssh_private_key_file": str(key),
            "ansible_ssh_common_args": "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null",
        }
    else:
        reach = {"ansible_connection": "podman"}
    first = host_name(1)
    return {
        "all": {
            "vars": reach
            | {
                "ansible_python_interpreter": "/usr/bin/python3",
                "vmmesh_lab": {"network": NETWORK, "subnet": SUBNET},
                "mesh": mesh_model(size),
            },
            "children": {
                "consul_servers": {"hosts": {first: hosts[first]}},
                "consul_clients": {"hosts": {name: hosts[name] for name in hosts if name != first}},
                # tests/bench/mesh/apps.yml deploys an echo server for every instance on the `echo` hosts.
                "echo": {"hosts": {name: {} for name in hosts}},
            },
        }
    }


def write_inventory(directory: Path, size: int, connection: str, key: Path) -> Path:
    """hosts.yml in `directory`, beside a link to tests/bench/converge/group_vars (the lab's settings)."""
    directory.mkdir(parents=True, exist_ok=True)
    link = directory / "group_vars"
    if link.is_symlink():
        link.unlink()
    link.symlink_to(HERE / "group_vars")
    path = directory / "hosts.yml"
    header = f"# Generated by tests/bench/converge_bench.py: {size} lab hosts reached over {connection}.\n"
    path.write_text(header + yaml.safe_dump(inventory(size, connection, key), sort_keys=False))
    return path


def timed(cmd: list[str], env: dict) -> tuple[float, dict[str, dict[str, int]]]:
    started = time.monotonic()
    out = run(cmd, env=env)
    return round(time.monotonic() - started, 1), recap(out)


def ssh_key(cache: Path) -> Path:
    key = cache / "bench-ssh" / "id_ed25519"
    if not key.exists():
        key.parent.mkdir(parents=True, exist_ok=True)
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "vmmesh-bench", "-f", str(key)])
    return key


def seed_apt_archives(cache: Path, names: list[str]) -> None:
    """Give every host the packages lab hosts downloaded before (lab/lab keeps an apt archive per host name).

    Without it the first connection measured on a new host name would download the roles' packages and the next
    would find them cached: the first runs would not compare.
    """
    archives = cache / "apt-archives"
    debs = {deb.name: deb for deb in archives.glob("*/*.deb")}
    for name in names:
        target = archives / name
        (target / "partial").mkdir(parents=True, exist_ok=True)
        for deb in debs.values():
            if not (target / deb.name).exists():
                os.link(deb, target / deb.name)


def converge(size: int, connection: str, cache: Path, keep: bool) -> dict:
    key = ssh_key(cache)
    hosts = write_inventory(WORK, size, connection, key)
    lab = [sys.executable, str(ROOT / "lab" / "lab"), "--inventory", str(hosts)]
    state = cache / "bench-converge-state"
    shutil.rmtree(state, ignore_errors=True)
    env = dict(
        os.environ,
        VMMESH_LAB_STATE=str(state),
        VMMESH_FORTIO=run([*lab, "fortio"]).strip().splitlines()[-1],
        VMMESH_BENCH_SSH_KEY=str(key),
        ANSIBLE_CONFIG=str(CONFIGS[connection]),
        # A fresh fact cache, so that the first run is a first run.
        ANSIBLE_CACHE_PLUGIN_CONNECTION=str(WORK / "facts"),
    )
    shutil.rmtree(WORK / "facts", ignore_errors=True)
    playbook = ["ansible-playbook", "-i", str(hosts)]
    result: dict = {"hosts": size, "connection": connection, "date": time.strftime("%Y-%m-%d", time.gmtime())}
    try:
        log(f"{size} hosts over {connection}: bringing up the lab")
        subprocess.run([*lab, "down"], check=True)
        seed_apt_archives(cache, [host_name(number) for number in range(1, size + 1)])
        subprocess.run([*lab, "up"], check=True)
        if connection == "ssh":
            # Through podman, which names the hosts by container name, not by the address SSH dials.
            by_name = [
                "-e",
                "ansible_connection=podman",
                "-e",
                "ansible_host={{ inventory_hostname }}",
            ]
            run([*playbook, str(HERE / "ssh.yml"), *by_name], env=env)
        # apps.yml sits beside the data-path benchmark's group_vars, whose `mesh` would win over the inventory's.
        model = WORK / "mesh.json"
        model.write_text(json.dumps({"mesh": mesh_model(size)}))
        run([*playbook, str(APPS), "-e", f"@{model}"], env=env)
        for label in ("first", "noop"):
            seconds, counts = timed([*playbook, str(SITE)], env)
            result[label] = {
                "seconds": seconds,
                "tasks": sum(c["ok"] + c["changed"] + c["skipped"] for c in counts.values()),
                "changed": sum(c["changed"] for c in counts.values()),
            }
            log(f"{size} hosts over {connection}: site.yml {label} {seconds:.0f} s, {result[label]}")
        result["noop_unchanged"] = result["noop"]["changed"] == 0
    finally:
        if not keep:
            subprocess.run([*lab, "down"], check=False)
    return result


def versions() -> dict:
    ssh = subprocess.run(["ssh", "-V"], capture_output=True, text=True, check=False)
    return lab_versions() | {"openssh": ssh.stderr.split(",")[0]}


def settings(path: Path) -> dict[str, dict[str, str]]:
    """The ansible.cfg options each way was measured with."""
    config = configparser.ConfigParser(interpolation=None)
    config.read(path)
    return {section: dict(config[section]) for section in config.sections()}


def keep_previous(report: dict, previous: dict) -> dict:
    """``report`` with the rows (and their connections' settings) of ``previous`` that it did not measure again.

    Rows of a report written before rows carried their own date take that report's date."""
    measured = {(row["hosts"], row["connection"]) for row in report["runs"]}
    kept = [
        {"date": previous.get("date", "")} | row
        for row in previous.get("runs", [])
        if (row["hosts"], row["connection"]) not in measured
    ]
    runs = sorted(report["runs"] + kept, key=lambda row: (row["hosts"], row["connection"] != "ssh"))
    settings = {
        connection: report["settings"].get(connection) or previous.get("settings", {}).get(connection, {})
        for connection in dict.fromkeys(row["connection"] for row in runs)
    }
    return report | {"runs": runs, "settings": settings}


def markdown(report: dict) -> str:
    lines = [
        "# Converge cost",
        "",
        f"Measured on {report['machine']['cpu']} ({report['machine']['cpus']} cores), "
        f"ansible-core {report['machine']['ansible_core']}, {report['versions']['openssh']}, "
        f"podman {report['versions']['podman']}, by `tests/bench/converge_bench.py`, on the dates in the table. "
        "Each size is a fresh lab with one Consul server, one service per host (Envoy and HAProxy in turn, "
        "each calling the next host's service); `site.yml` first on fresh hosts and a fresh controller state, "
        "then again on the converged hosts.",
        "",
        "| Hosts | Connection | First run | No-op re-run | Tasks (first / no-op) | Changed on re-run | Measured |",
        "| ---: | --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for row in report["runs"]:
        lines.append(
            f"| {row['hosts']} | {row['connection']} | {row['first']['seconds']:.0f} s "
            f"| {row['noop']['seconds']:.0f} s | {row['first']['tasks']} / {row['noop']['tasks']} "
            f"| {row['noop']['changed']} | {row.get('date', report['date'])} |"
        )
    lines += ["", "Settings of each connection (ansible.cfg):", ""]
    for connection, found in report["settings"].items():
        flat = ", ".join(f"`{name} = {value}`" for section in found.values() for name, value in section.items())
        lines.append(f"- {connection}: {flat}")
    lines.append("")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,5,20", help="comma-separated host counts (default 1,5,20)")
    parser.add_argument("--connections", default="ssh,podman", help="ssh, podman or both (default both)")
    parser.add_argument("--keep", action="store_true", help="leave the last lab up afterwards")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    parser.add_argument("--fresh", action="store_true", help="drop the rows of the report already in --output")
    args = parser.parse_args()
    cache = Path(os.environ.get("VMMESH_CACHE", Path.home() / ".cache" / "vmmesh"))
    sizes = [int(size) for size in args.sizes.split(",")]
    connections = args.connections.split(",")
    unknown = set(connections) - set(CONFIGS)
    if unknown or not 1 <= max(sizes) <= 200 or min(sizes) < 1:
        parser.error(f"--connections takes {', '.join(CONFIGS)}; --sizes takes 1 to 200 hosts")
    if "ssh" in connections and not (shutil.which("ssh") and shutil.which("ssh-keygen")):
        parser.error("the ssh connection needs OpenSSH's client: apt-get install openssh-client")
    report = {
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
        "machine": machine(),
        "versions": versions(),
        "settings": {connection: settings(CONFIGS[connection]) for connection in connections},
        "runs": [],
    }
    runs = report["runs"]
    existing = args.output / "converge.json"
    previous = {} if args.fresh or not existing.exists() else json.loads(existing.read_text())
    args.output.mkdir(parents=True, exist_ok=True)
    for size in sizes:
        for connection in connections:
            last = (size, connection) == (sizes[-1], connections[-1])
            runs.append(converge(size, connection, cache, args.keep and last))
            # Written after each size, so that a long run that is stopped keeps what it measured.
            written = keep_previous(report, previous)
            (args.output / "converge.json").write_text(json.dumps(written, indent=2) + "\n")
            (args.output / "converge.md").write_text(markdown(written))
    print(markdown(written))
    return 0 if all(row["noop_unchanged"] for row in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
