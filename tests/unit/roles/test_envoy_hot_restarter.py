"""roles/envoy/files/envoy-hot-restarter.py with the real Envoy binary: hot restarts under a steady stream of
keep-alive requests lose none, a failed epoch leaves the running one serving and is reported, SIGTERM stops all."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

RESTARTER = Path(__file__).resolve().parents[3] / "roles" / "envoy" / "files" / "envoy-hot-restarter.py"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _bootstrap(admin: int, listener: int, body: str) -> dict:
    router = {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}
    manager = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3."
        "HttpConnectionManager",
        "stat_prefix": "test",
        "route_config": {
            "virtual_hosts": [
                {
                    "name": "all",
                    "domains": ["*"],
                    "routes": [
                        {"match": {"prefix": "/"}, "direct_response": {"status": 200, "body": {"inline_string": body}}}
                    ],
                }
            ]
        },
        "http_filters": [{"name": "envoy.filters.http.router", "typed_config": router}],
    }
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}},
        "static_resources": {
            "listeners": [
                {
                    "name": "test",
                    "address": {"socket_address": {"address": "127.0.0.1", "port_value": listener}},
                    "filter_chains": [
                        {
                            "filters": [
                                {"name": "envoy.filters.network.http_connection_manager", "typed_config": manager}
                            ]
                        }
                    ],
                }
            ]
        },
    }


class Sidecar:
    def __init__(self, envoy_binary: str, work: Path) -> None:
        self.work = work
        self.runtime = work / "run"
        self.runtime.mkdir()
        self.config = work / "envoy.json"
        self.admin = _free_port()
        self.listener = _free_port()
        self.write("first")
        command = [envoy_binary, "-c", str(self.config), "--concurrency", "1", "--drain-time-s", "1"]
        command += ["--parent-shutdown-time-s", "2", "--drain-strategy", "gradual", "--log-level", "warning"]
        self.log = (work / "restarter.log").open("w")
        self.process = subprocess.Popen(
            [sys.executable, str(RESTARTER), "run", str(self.runtime), "--", *command],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.wait_for(lambda: self.get("/") == "first")

    def write(self, body: str) -> None:
        self.config.write_text(json.dumps(_bootstrap(self.admin, self.listener, body)))

    def get(self, path: str, port: int | None = None) -> str | None:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port or self.listener, timeout=2)
            connection.request("GET", path)
            return connection.getresponse().read().decode()
        except OSError:
            return None

    def server_info(self) -> dict:
        return json.loads(self.get("/server_info", self.admin) or "{}")

    def envoys(self) -> list[int]:
        out = subprocess.run(["pgrep", "-P", str(self.process.pid)], capture_output=True, text=True, check=False)
        return [int(pid) for pid in out.stdout.split()]

    def reload(self) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, str(RESTARTER), "reload", str(self.runtime), str(self.process.pid), "20"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    @staticmethod
    def wait_for(condition, seconds: float = 30) -> None:
        deadline = time.monotonic() + seconds
        while not condition():
            assert time.monotonic() < deadline, "timed out"
            time.sleep(0.1)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=30)
        self.log.close()
        return code


@pytest.fixture
def sidecar(envoy_binary: str, tmp_path: Path) -> Iterator[Sidecar]:
    running = Sidecar(envoy_binary, tmp_path)
    yield running
    running.stop()


def test_hot_restarts_lose_no_request_on_kept_alive_connections(sidecar: Sidecar) -> None:
    outcomes: list[str] = []
    done = threading.Event()

    def load() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", sidecar.listener, timeout=5)
        while not done.is_set():
            try:
                connection.request("GET", "/")
                response = connection.getresponse()
                outcomes.append(f"{response.status} {response.read().decode()}")
                if response.getheader("connection", "").lower() == "close":
                    connection.close()
            except OSError as error:
                outcomes.append(f"error {error!r}")
                connection.close()
            time.sleep(0.005)

    worker = threading.Thread(target=load)
    worker.start()
    try:
        time.sleep(0.5)
        for epoch, body in ((1, "second"), (2, "third")):
            sidecar.write(body)
            result = sidecar.reload()
            assert result.returncode == 0, result.stderr
            assert f"epoch {epoch} is live" in result.stderr
            assert sidecar.server_info()["command_line_options"]["restart_epoch"] == epoch
            Sidecar.wait_for(lambda body=body: outcomes and outcomes[-1] == f"200 {body}")
        # The old epochs drain (1 s), exit 2 s after their successor took over, and leave one Envoy.
        Sidecar.wait_for(lambda: len(sidecar.envoys()) == 1)
    finally:
        done.set()
        worker.join()
    assert outcomes and all(outcome.startswith("200 ") for outcome in outcomes), sorted(set(outcomes))
    assert {"200 first", "200 second", "200 third"} <= set(outcomes)


def test_a_failed_epoch_leaves_the_running_one_serving(sidecar: Sidecar) -> None:
    sidecar.config.write_text("{not json")
    started = time.monotonic()
    result = sidecar.reload()
    assert result.returncode == 1
    assert "epoch 1 failed to take over; epoch 0 keeps serving" in result.stderr
    assert time.monotonic() - started < 15, "the failure was reported only at the timeout"
    assert (sidecar.runtime / "failed").read_text().strip() == "1"
    assert sidecar.get("/") == "first"
    assert sidecar.process.poll() is None
    assert sidecar.server_info()["state"] == "LIVE"


def _shared_memory(sidecar: Sidecar) -> Path:
    """The hot-restart shared memory of the sidecar's base ID (Envoy names it after ten times the ID)."""
    return Path(f"/dev/shm/envoy_shared_memory_{int((sidecar.runtime / 'base-id').read_text()) * 10}")


def test_sigterm_stops_every_epoch(sidecar: Sidecar) -> None:
    sidecar.write("second")
    assert sidecar.reload().returncode == 0
    envoys = sidecar.envoys()
    assert envoys
    assert _shared_memory(sidecar).exists()
    assert sidecar.stop() == 0
    for pid in envoys:
        assert not os.path.exists(f"/proc/{pid}") or "zombie" in Path(f"/proc/{pid}/status").read_text()
    assert not _shared_memory(sidecar).exists()


def test_envoy_dying_on_its_own_ends_the_restarter_with_an_error(sidecar: Sidecar) -> None:
    (envoy,) = sidecar.envoys()
    os.kill(envoy, signal.SIGKILL)
    assert sidecar.process.wait(timeout=30) != 0
    assert not _shared_memory(sidecar).exists()


@pytest.mark.parametrize("argv", [[], ["run", "/run/x"], ["reload", "/run/x", "pid"], ["serve"]])
def test_usage(argv: list[str]) -> None:
    result = subprocess.run([sys.executable, str(RESTARTER), *argv], capture_output=True, text=True, check=False)
    assert result.returncode == 2
    assert "envoy-hot-restarter run RUNTIME_DIR -- ENVOY" in result.stderr
