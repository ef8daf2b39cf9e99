"""playbooks/report.yml on the controller, against a stand-in for Prometheus' query API with known answers.

The live run against the real Prometheus, Envoy and HAProxy is in molecule/observability.
"""

from __future__ import annotations

import http.server
import json
import sys
import threading
import urllib.parse
from pathlib import Path
from typing import ClassVar

import pytest
import yaml
from ansible_collections.vmmesh.mesh.tests.unit.ansible_playbook import run_playbook

ROOT = Path(__file__).resolve().parents[3]
ANSWERS = {
    "sum by": [
        {"metric": {"source": "front", "destination": "api"}, "value": [0, "5.5"]},
        {"metric": {"source": "front", "destination": "legacy"}, "value": [0, "2"]},
    ],
    "error_ratio": [
        {"metric": {"source": "front", "destination": "api"}, "value": [0, "0.4"]},
        {"metric": {"source": "front", "destination": "legacy"}, "value": [0, "0.02"]},
        # No request in the ratio's window: 0/0.
        {"metric": {"source": "legacy", "destination": "api"}, "value": [0, "NaN"]},
    ],
    "p99": [
        {"metric": {"source": "front", "destination": "api"}, "value": [0, "0.0975"]},
        {"metric": {"source": "front", "destination": "legacy"}, "value": [0, "NaN"]},
    ],
    "up{": [
        {"metric": {"job": "node", "host": "web1", "instance": "web1:9100"}, "value": [0, "1"]},
        {
            "metric": {"job": "vmmesh-sidecars", "host": "web1", "service": "front", "instance": "10.0.0.1:20001"},
            "value": [0, "0"],
        },
    ],
    "certificate_days_left": [{"metric": {"host": "web1", "service": "front"}, "value": [0, "12.5"]}],
}


class _Prometheus(http.server.BaseHTTPRequestHandler):
    queries: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        query = urllib.parse.parse_qs(urllib.parse.urlparse(self.path).query)["query"][0]
        self.queries.append(query)
        result = next(answer for key, answer in ANSWERS.items() if key in query)
        body = json.dumps({"status": "success", "data": {"resultType": "vector", "result": result}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def prometheus():
    server = http.server.HTTPServer(("127.0.0.1", 0), _Prometheus)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_report_writes_markdown_svg_and_json(prometheus: str, tmp_path: Path) -> None:
    inventory = {
        "all": {
            "hosts": {"localhost": {"ansible_connection": "local", "mesh_address": "127.0.0.1"}},
            "children": {"monitoring": {"hosts": {"localhost": {}}}},
            "vars": {
                "mesh": {
                    "name": "shop",
                    "discovery": "static",
                    "services": {
                        "front": {
                            "port": 18080,
                            "hosts": ["localhost"],
                            "upstreams": [
                                {"service": "api", "local_port": 19101},
                                {"service": "legacy", "local_port": 19102},
                            ],
                        },
                        "api": {"port": 18081, "hosts": ["localhost"]},
                        "legacy": {
                            "port": 18082,
                            "hosts": ["localhost"],
                            "sidecar": "haproxy",
                            "upstreams": [{"service": "api", "local_port": 19104}],
                        },
                        "idle": {
                            "port": 18083,
                            "hosts": ["localhost"],
                            "upstreams": [{"service": "api", "local_port": 19103}],
                            "tracing": {"enabled": False},
                        },
                    },
                    "intentions": [{"source": "*", "destination": "*", "action": "allow"}],
                    "tracing": {"enabled": True, "backend": {"host": "localhost", "port": 9411}},
                }
            },
        }
    }
    (tmp_path / "inventory.yml").write_text(yaml.safe_dump(inventory))
    out = tmp_path / "report"
    extra = {"report_dir": str(out), "report_prometheus_url": prometheus, "ansible_python_interpreter": sys.executable}
    result = run_playbook(ROOT / "playbooks" / "report.yml", tmp_path / "inventory.yml", extra_vars=extra)
    assert result.returncode == 0, result.stdout + result.stderr
    assert all('mesh="shop"' in query for query in _Prometheus.queries)
    report = json.loads((out / "report.json").read_text())
    edges = {(e["source"], e["destination"]): e for e in report["edges"]}
    assert edges[("front", "api")] == {
        "source": "front",
        "destination": "api",
        "local_port": 19101,
        "requests_per_second": 5.5,
        "error_ratio": 0.4,
        "p99_seconds": 0.0975,
        "health": "failing",
        "traces_url": "http://127.0.0.1:9411/zipkin/?serviceName=front&annotationQuery=mesh.upstream%3Dapi",
    }
    assert (edges[("front", "legacy")]["health"], edges[("front", "legacy")]["p99_seconds"]) == ("degraded", None)
    assert (edges[("idle", "api")]["health"], edges[("idle", "api")]["error_ratio"]) == ("idle", None)
    assert edges[("idle", "api")]["traces_url"] is None  # idle does not trace
    assert edges[("legacy", "api")]["traces_url"] is None  # HAProxy makes no spans
    assert (edges[("legacy", "api")]["health"], edges[("legacy", "api")]["error_ratio"]) == ("idle", None)
    assert [t["up"] for t in report["targets"]] == [True, False]
    assert report["certificates"] == [{"host": "web1", "service": "front", "identity": "", "days_left": 12.5}]
    markdown = (out / "report.md").read_text()
    assert (
        "| front | api | 5.50 | 40.0% | 98 ms | failing |"
        " [search](http://127.0.0.1:9411/zipkin/?serviceName=front&annotationQuery=mesh.upstream%3Dapi) |"
    ) in markdown
    assert "| idle | api | 0.00 | - | - | idle | - |" in markdown
    assert "| legacy | api | 0.00 | - | - | idle | - |" in markdown
    assert "| vmmesh-sidecars | web1 | front | 10.0.0.1:20001 | **no** |" in markdown
    dot = (out / "topology.dot").read_text()
    assert '"front" -> "api" [color="#c62828"' in dot
    assert '"front" -> "legacy" [color="#ef6c00"' in dot
    assert '"idle" -> "api" [color="#9e9e9e"' in dot
    svg = (out / "topology.svg").read_text()
    assert "<svg" in svg and "#c62828" in svg
