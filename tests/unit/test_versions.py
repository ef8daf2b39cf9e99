"""The pinned versions are the one source the roles, the lab and the test tools agree on."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
VERSIONS = yaml.safe_load((ROOT / "roles" / "_common" / "vars" / "versions.yml").read_text())["_vmmesh_versions"]


def test_every_release_checksum_is_a_sha256() -> None:
    for name, pin in VERSIONS.items():
        for arch, digest in pin["release"]["sha256"].items():
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
