"""The pinned versions are the one source the roles, the lab and the test tools agree on."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
VERSIONS = yaml.safe_load((ROOT / "roles" / "_common" / "vars" / "versions.yml").read_text())["_vmmesh_versions"]


def test_every_release_checksum_is_a_sha256() -> None:
    for name, pin in VERSIONS.items():
        for arch, digest in pin.get("release", {}).get("sha256", {}).items():
            assert re.fullmatch(r"[0-9a-f]{64}", digest), f"{name} {arch}: {digest!r} is not a sha256"


def test_the_envoy_wheel_in_requirements_is_the_pinned_one() -> None:
    lab = VERSIONS["envoy"]["lab"]
    requirements = (ROOT / "requirements-dev.txt").read_text()
    assert f"{lab['pypi']}=={lab['pypi_version']}" in requirements
    assert lab["pypi_version"].startswith(VERSIONS["envoy"]["version"])


def test_the_consul_build_module_requires_the_pinned_release() -> None:
    lab = VERSIONS["consul"]["lab"]
    gomod = (ROOT / "lab" / "consul" / "go.mod").read_text()
    assert re.search(rf"^\s*{re.escape(lab['go_module'])} {re.escape(lab['go_version'])}\b", gomod, re.M)
    assert lab["go_version"] == "v" + VERSIONS["consul"]["version"]


def test_the_prometheus_build_module_requires_the_pinned_release() -> None:
    lab = VERSIONS["prometheus"]["lab"]
    gomod = (ROOT / "lab" / "prometheus" / "go.mod").read_text()
    assert re.search(rf"^(require)?\s*{re.escape(lab['go_module'])} {re.escape(lab['go_version'])}\b", gomod, re.M)
    # Prometheus 3.x.y is published as the module version v0.3xx.y.
    major, minor, patch = VERSIONS["prometheus"]["version"].split(".")
    assert lab["go_version"] == f"v0.{int(major) * 100 + int(minor)}.{patch}"


def test_the_prometheus_build_keeps_consul_discovery_only() -> None:
    tags = VERSIONS["prometheus"]["lab"]["go_tags"]
    assert "remove_all_sd" in tags and "enable_consul_sd" in tags
    assert [tag for tag in tags if tag.startswith("enable_")] == ["enable_consul_sd"]
