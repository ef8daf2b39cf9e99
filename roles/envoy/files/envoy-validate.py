#!/usr/bin/python3
# Copyright (c) vmmesh.mesh contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Validate one Envoy sidecar's candidate configuration with the real binary before any of it goes live.

Usage: envoy-validate ENVOY_BINARY CANDIDATE

CANDIDATE is a JSON document holding every file of one instance, parsed:
``{"envoy.yaml": {...}, "lds.yaml": {...}, "cds.yaml": {...}, "sds/<secret>.yaml": {...}}``.
``envoy --mode validate`` checks a bootstrap but does not load file-based LDS, CDS or SDS, so the listeners,
clusters and secrets are folded into one static bootstrap (secrets referenced by name) and that is validated:
every listener, cluster, filter, certificate file and key the live sidecar would load.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from typing import Any


def _resources(document: dict[str, Any] | None) -> list[dict[str, Any]]:
    return [{k: v for k, v in item.items() if k != "@type"} for item in (document or {}).get("resources", [])]


def _static_secret_references(node: Any) -> Any:
    """The same tree with every ``sds_config`` removed, so that secrets resolve to ``static_resources.secrets``."""
    if isinstance(node, dict):
        return {k: _static_secret_references(v) for k, v in node.items() if k != "sds_config"}
    if isinstance(node, list):
        return [_static_secret_references(item) for item in node]
    return node


def static_bootstrap(candidate: dict[str, Any]) -> dict[str, Any]:
    bootstrap = {k: v for k, v in candidate["envoy.yaml"].items() if k != "dynamic_resources"}
    secrets = [
        secret for name, doc in sorted(candidate.items()) if name.startswith("sds/") for secret in _resources(doc)
    ]
    bootstrap["static_resources"] = _static_secret_references(
        {
            "listeners": _resources(candidate.get("lds.yaml")),
            "clusters": _resources(candidate.get("cds.yaml")),
            "secrets": secrets,
        }
    )
    return bootstrap


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print("usage: envoy-validate ENVOY_BINARY CANDIDATE", file=sys.stderr)
        return 2
    with open(argv[2], encoding="utf-8") as handle:
        candidate = json.load(handle)
    with tempfile.NamedTemporaryFile("w", suffix=".json", encoding="utf-8") as bootstrap:
        json.dump(static_bootstrap(candidate), bootstrap)
        bootstrap.flush()
        result = subprocess.run(
            [argv[1], "--mode", "validate", "--log-level", "error", "--disable-hot-restart", "-c", bootstrap.name],
            capture_output=True,
            text=True,
            check=False,
        )
    if result.returncode != 0:
        print(result.stderr.strip() or result.stdout.strip(), file=sys.stderr)
    return result.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv))
