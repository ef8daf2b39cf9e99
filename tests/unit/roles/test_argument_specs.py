"""Every role documents exactly the variables its defaults define, with the same defaults."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

ROLES = Path(__file__).resolve().parents[3] / "roles"
PUBLIC_ROLES = sorted(
    p.name for p in ROLES.iterdir() if (p / "defaults" / "main.yml").exists() and not p.name.startswith("_")
)


def _load(path: Path) -> dict:
    return yaml.safe_load(path.read_text()) or {}


@pytest.mark.parametrize("role", PUBLIC_ROLES)
def test_defaults_and_argument_specs_list_the_same_variables(role: str) -> None:
    defaults = _load(ROLES / role / "defaults" / "main.yml")
    options = _load(ROLES / role / "meta" / "argument_specs.yml")["argument_specs"]["main"]["options"]
    assert sorted(defaults) == sorted(options), (
        f"roles/{role}: only in defaults/main.yml: {sorted(set(defaults) - set(options))}; "
        f"only in meta/argument_specs.yml: {sorted(set(options) - set(defaults))}"
    )


@pytest.mark.parametrize("role", PUBLIC_ROLES)
def test_documented_defaults_match_the_defaults(role: str) -> None:
    defaults = _load(ROLES / role / "defaults" / "main.yml")
    options = _load(ROLES / role / "meta" / "argument_specs.yml")["argument_specs"]["main"]["options"]
    drift = {
        name: (options[name].get("default"), value)
        for name, value in defaults.items()
        if name in options and options[name].get("default") != value
    }
    assert not drift, f"roles/{role}: documented default differs from defaults/main.yml (documented, actual): {drift}"


@pytest.mark.parametrize("role", PUBLIC_ROLES)
def test_every_option_is_described_and_typed(role: str) -> None:
    options = _load(ROLES / role / "meta" / "argument_specs.yml")["argument_specs"]["main"]["options"]
    missing = sorted(name for name, spec in options.items() if not spec.get("description") or not spec.get("type"))
    assert not missing, f"roles/{role}: options without a description or type: {missing}"


@pytest.mark.parametrize("role", PUBLIC_ROLES)
def test_public_variables_carry_the_role_prefix(role: str) -> None:
    defaults = _load(ROLES / role / "defaults" / "main.yml")
    stray = sorted(name for name in defaults if not name.startswith(f"{role}_"))
    assert not stray, f"roles/{role}: public variables without the '{role}_' prefix: {stray}"
