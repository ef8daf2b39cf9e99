"""Check a built collection artefact: what users install, and nothing of the lab or tests' output."""

from __future__ import annotations

import sys
import tarfile

REQUIRED = {
    "MANIFEST.json",
    "FILES.json",
    "README.md",
    "LICENSE",
    "meta/runtime.yml",
    "roles/node_exporter/tasks/main.yml",
    "roles/_common/vars/versions.yml",
    "playbooks/site.yml",
}
FORBIDDEN_PREFIXES = (
    ".venv/",
    ".cache/",
    ".build/",
    ".git/",
    "lab/",
    "molecule/",
    ".ci/",
    "tests/output/",
    "render-out/",
)
FORBIDDEN_PARTS = ("__pycache__", ".pytest_cache", ".hypothesis", ".ruff_cache")


def main(path: str) -> int:
    with tarfile.open(path) as artefact:
        names = {name.removeprefix("./") for name in artefact.getnames()}
    problems = [f"missing: {name}" for name in sorted(REQUIRED - names)]
    problems += [
        f"should not ship: {name}"
        for name in sorted(names)
        if name.startswith(FORBIDDEN_PREFIXES) or any(part in name.split("/") for part in FORBIDDEN_PARTS)
    ]
    for problem in problems:
        print(f"{path}: {problem}", file=sys.stderr)
    print(f"{path}: {len(names)} entries, {'clean' if not problems else f'{len(problems)} problems'}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
