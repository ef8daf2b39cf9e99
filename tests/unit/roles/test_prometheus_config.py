"""prometheus.yml as vmmesh.mesh.prometheus renders it: accepted by promtool, and keeping the registration contract.

The Consul side (services tagged ``vmmesh-metrics`` with meta ``vmmesh_mesh``, ``metrics_path``,
``metrics_scheme``, ``vmmesh_service``, ``vmmesh_sidecar``) is described in docs/observability.md.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from ansible_collections.vmmesh.mesh.tests.unit.ansible_playbook import run_playbook

ROOT = Path(__file__).resolve().parents[3]
PLAYBOOK = Path(__file__).parent / "fixtures" / "prometheus_config.yml"
MESH = {
    "name": "shop",
    "metrics": {"expose": True},
    "services": {
        "web": {"port": 8080, "hosts": ["web1"]},
        "user-api": {"port": 8081, "hosts": ["api1"], "subsets": {"v1": {"hosts": ["api1"]}}},
    },
}


def _render(tmp_path: Path, **variables: object) -> dict:
    """Render prometheus.yml with the given variables into tmp_path; return it parsed."""
    config_dir = tmp_path / "etc"
    (config_dir / "secrets").mkdir(parents=True)
    (config_dir / "rules").mkdir()
    extra = {
        "out": str(tmp_path),
        "ansible_python_interpreter": sys.executable,
        "mesh": MESH,
        "prometheus_config_dir": str(config_dir),
        "prometheus_node_exporter_basic_auth_password": "scrape-secret",
        "prometheus_consul_token": "consul-token",
        **variables,
    }
    result = run_playbook(PLAYBOOK, None, extra_vars=extra, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    for name in ("node_exporter_password", "consul_token"):
        (config_dir / "secrets" / name).write_text("x")
    return yaml.safe_load((tmp_path / "prometheus.yml").read_text())


def _check(promtool: str, tmp_path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [promtool, "check", "config", str(tmp_path / "prometheus.yml")], capture_output=True, text=True, check=False
    )


def _jobs(config: dict) -> dict[str, dict]:
    return {job["job_name"]: job for job in config["scrape_configs"]}


def test_static_discovery_reads_the_planner_and_inventory_targets(promtool: str, tmp_path: Path) -> None:
    config = _render(
        tmp_path, prometheus_discovery="static", prometheus_node_exporter_tls_ca_file=str(tmp_path / "ca.pem")
    )
    (tmp_path / "ca.pem").write_text("")
    result = _check(promtool, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    jobs = _jobs(config)
    assert sorted(jobs) == ["node", "prometheus", "vmmesh-sidecars"]
    # every target carries the mesh and its host
    assert jobs["prometheus"]["static_configs"][0]["labels"] == {"host": "localhost", "mesh": "shop"}
    node = jobs["node"]
    assert node["scheme"] == "https"
    assert node["basic_auth"] == {
        "username": "prometheus",
        "password_file": str(tmp_path / "etc" / "secrets" / "node_exporter_password"),
    }
    assert "scrape-secret" not in (tmp_path / "prometheus.yml").read_text()
    assert node["file_sd_configs"] == [{"files": [str(tmp_path / "etc" / "vmmesh_sd" / "node.json")]}]
    assert jobs["vmmesh-sidecars"]["file_sd_configs"] == [
        {"files": [str(tmp_path / "etc" / "vmmesh_sd" / "sidecars.json")]}
    ]


def test_consul_discovery_keeps_the_registration_contract(promtool: str, tmp_path: Path) -> None:
    config = _render(tmp_path, prometheus_discovery="consul", prometheus_install_method="release")
    jobs = _jobs(config)
    assert sorted(jobs) == ["consul-agent", "consul-servers", "node", "prometheus", "vmmesh-sidecars"]
    token_file = str(tmp_path / "etc" / "secrets" / "consul_token")
    for name, services in (
        ("node", ["node-exporter"]),
        ("vmmesh-sidecars", ["vmmesh-envoy-metrics", "vmmesh-haproxy-metrics"]),
    ):
        (sd,) = jobs[name]["consul_sd_configs"]
        assert sd["services"] == services
        assert sd["tags"] == ["vmmesh-metrics"]
        assert sd["server"] == "127.0.0.1:8500"
        assert sd["authorization"] == {"type": "Bearer", "credentials_file": token_file}
        relabel = {
            (tuple(r.get("source_labels", [])), r.get("target_label"), r.get("action", "replace")): r
            for r in jobs[name]["relabel_configs"]
        }
        keep = relabel[(("__meta_consul_service_metadata_vmmesh_mesh",), None, "keep")]
        assert keep["regex"] == "shop"
        assert (("__meta_consul_service_metadata_metrics_path",), "__metrics_path__", "replace") in relabel
        assert (("__meta_consul_service_metadata_metrics_scheme",), "__scheme__", "replace") in relabel
        assert (("__meta_consul_node",), "host", "replace") in relabel
    sidecar_labels = {r.get("target_label") for r in jobs["vmmesh-sidecars"]["relabel_configs"]}
    assert {"service", "sidecar", "host", "mesh"} <= sidecar_labels
    agent = jobs["consul-agent"]
    assert agent["metrics_path"] == "/v1/agent/metrics"
    assert agent["params"] == {"format": ["prometheus"]}
    assert agent["authorization"] == {"type": "Bearer", "credentials_file": token_file}
    assert "consul-token" not in (tmp_path / "prometheus.yml").read_text()
    # The servers are scraped at their addresses; their certificates name server.<datacenter>.consul.
    servers = jobs["consul-servers"]
    assert servers["scheme"] == "https"
    assert servers["tls_config"]["server_name"] == "server.dc1.consul"
    (servers_sd,) = servers["consul_sd_configs"]
    # Consul registers itself without the vmmesh-metrics tag.
    assert servers_sd["services"] == ["consul"] and "tags" not in servers_sd
    assert servers_sd["authorization"] == {"type": "Bearer", "credentials_file": token_file}


def test_consul_servers_name_can_be_left_to_the_address(tmp_path: Path) -> None:
    config = _render(
        tmp_path,
        prometheus_discovery="consul",
        prometheus_install_method="release",
        prometheus_consul_tls_server_name="",
        mesh={**MESH, "datacenter": "eu1"},
    )
    assert "server_name" not in _jobs(config)["consul-servers"]["tls_config"]
    config = _render(tmp_path / "eu1", prometheus_discovery="consul", mesh={**MESH, "datacenter": "eu1"})
    assert _jobs(config)["consul-servers"]["tls_config"]["server_name"] == "server.eu1.consul"


def test_the_lab_build_validates_consul_discovery(lab_promtool: str, tmp_path: Path) -> None:
    """The lab's Prometheus build keeps Consul discovery: its promtool accepts what Debian's rejects."""
    tls = {f"prometheus_consul_tls_{name}_file": str(tmp_path / f"{name}.pem") for name in ("ca", "cert", "key")}
    for path in tls.values():
        Path(path).write_text("")
    _render(tmp_path, prometheus_discovery="consul", prometheus_install_method="local", **tls)
    result = _check(lab_promtool, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr
    # ... and leaves the other service discovery plugins out.
    (tmp_path / "prometheus.yml").write_text(
        "scrape_configs:\n  - job_name: dns\n    dns_sd_configs: [{names: [example.test]}]\n"
    )
    result = _check(lab_promtool, tmp_path)
    assert result.returncode == 1
    assert "field dns_sd_configs not found" in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("method", "binary", "consoles"),
    [("package", "/usr/bin/prometheus", True), ("local", "/usr/local/bin/prometheus", False)],
)
def test_the_unit_flags_follow_the_install_method(tmp_path: Path, method: str, binary: str, consoles: bool) -> None:
    _render(tmp_path, prometheus_install_method=method, prometheus_extra_args=["--web.enable-lifecycle"])
    unit = (tmp_path / "vmmesh.conf").read_text()
    exec_start = unit.split("ExecStart=\n", 1)[1].split("\nLimitNOFILE", 1)[0]
    flags = [part.strip(" \\") for part in exec_start.removeprefix("ExecStart=").splitlines()]
    assert flags[0] == binary
    assert f"--config.file={tmp_path / 'etc'}/prometheus.yml" in flags
    assert flags[-1] == "--web.enable-lifecycle"
    # Debian's console templates exist only with its package.
    assert any(flag.startswith("--web.console.templates=/usr/share/prometheus") for flag in flags) is consoles
    assert all(line.endswith(" \\") for line in exec_start.splitlines()[:-1])


def test_debian_prometheus_has_no_consul_discovery(promtool: str, tmp_path: Path) -> None:
    """Debian 12 builds Prometheus without Consul SD: consul discovery needs the upstream release."""
    _render(tmp_path, prometheus_discovery="consul", prometheus_install_method="release")
    result = _check(promtool, tmp_path)
    if "+ds" not in subprocess.run([promtool, "--version"], capture_output=True, text=True, check=True).stdout:
        pytest.skip("this promtool is not Debian's")
    assert result.returncode == 1
    assert "field consul_sd_configs not found" in result.stdout + result.stderr


def test_promtool_rejects_a_broken_configuration(promtool: str, tmp_path: Path) -> None:
    """The check the role runs before prometheus.yml goes live does reject bad files."""
    _render(tmp_path, prometheus_discovery="static", prometheus_scrape_timeout="30s", prometheus_scrape_interval="15s")
    result = _check(promtool, tmp_path)
    assert result.returncode == 1
    assert "scrape timeout greater than scrape interval" in result.stdout + result.stderr


# ---------------------------------------------------------------------------------------------------------------------
# The Envoy relabelling, applied as Prometheus applies it (anchored RE2 on the ;-joined source labels).


def _relabel(rules: list[dict], labels: dict[str, str]) -> dict[str, str]:
    labels = dict(labels)
    for rule in rules:
        value = ";".join(labels.get(name, "") for name in rule["source_labels"])
        match = re.fullmatch(rule["regex"], value)
        if match:
            labels[rule["target_label"]] = re.sub(
                r"\$(\d+)", lambda ref, found=match: found.group(int(ref.group(1))) or "", rule["replacement"]
            )
    return {name: value for name, value in labels.items() if value}


@pytest.mark.parametrize(
    ("scraped", "stored"),
    [
        pytest.param(
            {
                "__name__": "envoy_http_web_downstream_rq_xx",
                "envoy_http_conn_manager_prefix": "upstream",
                "envoy_response_code_class": "5",
            },
            {
                "__name__": "envoy_http_downstream_rq_xx",
                "envoy_http_conn_manager_prefix": "upstream",
                "envoy_response_code_class": "5",
                "destination": "web",
            },
            id="outbound-listener",
        ),
        pytest.param(
            {
                "__name__": "envoy_http_user_api_downstream_rq_time_bucket",
                "envoy_http_conn_manager_prefix": "upstream",
                "le": "5",
            },
            {
                "__name__": "envoy_http_downstream_rq_time_bucket",
                "envoy_http_conn_manager_prefix": "upstream",
                "le": "5",
                "destination": "user-api",
            },
            id="dashed-destination-histogram",
        ),
        pytest.param(
            {
                "__name__": "envoy_cluster_user_api_v1_external_upstream_rq_xx",
                "envoy_cluster_name": "upstream",
                "envoy_response_code_class": "2",
            },
            {
                "__name__": "envoy_cluster_external_upstream_rq_xx",
                "envoy_cluster_name": "upstream",
                "envoy_response_code_class": "2",
                "upstream_cluster": "user_api_v1",
                "destination": "user-api",
                "subset": "v1",
            },
            id="subset-cluster",
        ),
        pytest.param(
            {"__name__": "envoy_cluster_web_outlier_detection_ejections_active", "envoy_cluster_name": "upstream"},
            {
                "__name__": "envoy_cluster_outlier_detection_ejections_active",
                "envoy_cluster_name": "upstream",
                "upstream_cluster": "web",
                "destination": "web",
            },
            id="cluster-ejections",
        ),
        pytest.param(
            {
                "__name__": "envoy_http_downstream_rq_xx",
                "envoy_http_conn_manager_prefix": "inbound",
                "envoy_response_code_class": "2",
            },
            {
                "__name__": "envoy_http_downstream_rq_xx",
                "envoy_http_conn_manager_prefix": "inbound",
                "envoy_response_code_class": "2",
            },
            id="inbound-untouched",
        ),
        pytest.param(
            {
                "__name__": "envoy_cluster_upstream_rq_xx",
                "envoy_cluster_name": "local_app",
                "envoy_response_code_class": "2",
            },
            {
                "__name__": "envoy_cluster_upstream_rq_xx",
                "envoy_cluster_name": "local_app",
                "envoy_response_code_class": "2",
            },
            id="local-cluster-untouched",
        ),
    ],
)
def test_envoy_statistics_get_their_destination_back(tmp_path: Path, scraped: dict, stored: dict) -> None:
    config = _render(tmp_path, prometheus_discovery="static")
    rules = _jobs(config)["vmmesh-sidecars"]["metric_relabel_configs"]
    assert _relabel(rules, scraped) == stored
