"""Bad mesh_ca variables stop the role in preflight with a message naming the variable."""

from __future__ import annotations

from pathlib import Path

import pytest

ROLE = "mesh_ca"


def test_good_variables_pass_preflight(run_preflight, tmp_path: Path) -> None:
    result = run_preflight(ROLE, {"mesh_ca_dir": str(tmp_path / "ca"), "mesh": {"name": "shop", "services": {}}})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Check mesh_ca_trust_domain" in result.stdout
    assert "Create the private key" not in result.stdout
    assert not (tmp_path / "ca").exists()


@pytest.mark.parametrize(
    ("extra_vars", "expected"),
    [
        pytest.param({}, ["The SPIFFE trust domain is", "define `mesh`", "mesh_ca_trust_domain"], id="no-trust-domain"),
        pytest.param(
            {"mesh_ca_trust_domain": "Shop Mesh"}, ['"Shop Mesh"', "mesh_ca_trust_domain"], id="bad-trust-domain"
        ),
        pytest.param(
            {"mesh_ca_trust_domain": "shop.mesh", "mesh_ca_lifetime": "10 years"},
            ["mesh_ca_lifetime", '"10 years"', "3650d"],
            id="lifetime",
        ),
        pytest.param(
            {"mesh_ca_trust_domain": "shop.mesh", "mesh_ca_key_type": "dsa"},
            ["mesh_ca_key_type", "dsa", "ec-p384"],
            id="key-type",
        ),
        pytest.param(
            {"mesh_ca_trust_domain": "shop.mesh", "mesh_ca_rotation_phase": "rotate"},
            ["mesh_ca_rotation_phase", "rotate"],
            id="phase",
        ),
        pytest.param(
            {"mesh_ca_trust_domain": "shop.mesh", "mesh_ca_require_passphrase": True},
            ["mesh_ca_require_passphrase is true but mesh_ca_passphrase is empty", "Ansible Vault"],
            id="passphrase-required",
        ),
        pytest.param(
            {"mesh_ca_trust_domain": "shop.mesh", "mesh_ca_rotation_phase": "add"},
            ["to rotate yet: run the role without mesh_ca_rotation_phase first"],
            id="rotate-without-ca",
        ),
    ],
)
def test_bad_variables_stop_in_preflight(run_preflight, tmp_path: Path, extra_vars: dict, expected: list[str]) -> None:
    result = run_preflight(ROLE, {"mesh_ca_dir": str(tmp_path / "ca"), **extra_vars})
    text = " ".join((result.stdout + result.stderr).split())
    assert result.returncode != 0, text
    for fragment in expected:
        assert fragment in text, f"{fragment!r} missing from:\n{text}"
    assert not (tmp_path / "ca").exists()
