"""vmmesh.mesh.mesh_ca on the controller: the four steps, the rotation phases, and every bad input."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from ansible_collections.vmmesh.mesh.tests.unit.ansible_playbook import assert_failed_with, flat_output, run_playbook
from cryptography import x509

ROOT = Path(__file__).resolve().parents[3]
PLAYBOOK = Path(__file__).parent / "fixtures" / "mesh_ca.yml"
ANSIBLE_PLAYBOOK = Path(sys.executable).parent / "ansible-playbook"
PASSPHRASE = "unit-test-ca-passphrase"


def run_role(ca_dir: Path, *flags: str, **extra_vars: object) -> subprocess.CompletedProcess:
    variables = {
        "ansible_python_interpreter": sys.executable,
        "mesh_ca_dir": str(ca_dir),
        "mesh_ca_trust_domain": "unit.mesh",
        "mesh_ca_key_type": "ec-p256",
        **extra_vars,
    }
    return run_playbook(PLAYBOOK, "localhost,", *flags, extra_vars=variables)


def changed(result: subprocess.CompletedProcess) -> int:
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    return int(re.search(r"localhost\s+: ok=\d+\s+changed=(\d+)", result.stdout).group(1))


def state(ca_dir: Path) -> dict:
    return json.loads((ca_dir / "state.json").read_text())


def files(ca_dir: Path) -> dict[str, bytes]:
    return {str(path.relative_to(ca_dir)): path.read_bytes() for path in sorted(ca_dir.rglob("*")) if path.is_file()}


@pytest.fixture(scope="module")
def ca_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA made in the four steps, with an encrypted key; later tests rotate it."""
    directory = tmp_path_factory.mktemp("ca") / "unit.mesh"
    assert changed(run_role(directory, "--check", mesh_ca_passphrase=PASSPHRASE)) > 0
    assert not directory.exists(), "check mode writes nothing"
    assert changed(run_role(directory, mesh_ca_passphrase=PASSPHRASE)) > 0
    assert changed(run_role(directory, "--check", mesh_ca_passphrase=PASSPHRASE)) == 0
    assert changed(run_role(directory, mesh_ca_passphrase=PASSPHRASE)) == 0
    return directory


def test_the_ca_is_made_once_encrypted_and_private(ca_dir: Path) -> None:
    assert state(ca_dir) == {"format_version": 1, "signer": 1, "trusted": [1]}
    key = ca_dir / "generations" / "1" / "ca.key"
    assert key.read_text().startswith("-----BEGIN ENCRYPTED PRIVATE KEY-----")
    assert key.stat().st_mode & 0o777 == 0o600 and ca_dir.stat().st_mode & 0o777 == 0o700
    assert (ca_dir / "trust-bundle.pem").read_bytes() == (ca_dir / "generations" / "1" / "ca.pem").read_bytes()


def test_other_settings_never_replace_the_ca(ca_dir: Path) -> None:
    before = files(ca_dir)
    result = run_role(
        ca_dir,
        mesh_ca_passphrase=PASSPHRASE,
        mesh_ca_key_type="rsa-2048",
        mesh_ca_common_name="Other",
        mesh_ca_lifetime="1d",
    )
    assert changed(result) == 0
    assert files(ca_dir) == before


@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        pytest.param(
            {"mesh_ca_passphrase": ""},
            "is encrypted (or unreadable) and mesh_ca_passphrase is empty: set mesh_ca_passphrase to its passphrase "
            "from Ansible Vault",
            id="missing-passphrase",
        ),
        pytest.param({"mesh_ca_passphrase": "wrong"}, "mesh_ca_passphrase does not open the mesh CA key", id="wrong"),
        pytest.param(
            {"mesh_ca_passphrase": PASSPHRASE, "mesh_ca_rotation_phase": "reissue"},
            'mesh_ca_rotation_phase is reissue but the rotation is at "none": run phase add first',
            id="reissue-before-add",
        ),
    ],
)
def test_bad_input_stops_before_anything_changes(ca_dir: Path, variables: dict, expected: str) -> None:
    before = files(ca_dir)
    result = run_role(ca_dir, **variables)
    assert_failed_with(result, expected)
    assert str(ca_dir / "generations" / "1" / "ca.key") in flat_output(result) or "rotation" in expected
    assert files(ca_dir) == before
    assert PASSPHRASE not in result.stdout + result.stderr


def test_rotation_phases_in_order_each_safe_to_repeat(ca_dir: Path) -> None:
    signer1 = (ca_dir / "generations" / "1" / "ca.pem").read_text()
    assert changed(run_role(ca_dir, mesh_ca_passphrase=PASSPHRASE, mesh_ca_rotation_phase="add")) > 0
    assert state(ca_dir) == {"format_version": 1, "signer": 1, "trusted": [1, 2]}
    signer2 = (ca_dir / "generations" / "2" / "ca.pem").read_text()
    assert (ca_dir / "trust-bundle.pem").read_text() == signer1 + signer2
    subject = x509.load_pem_x509_certificate(signer2.encode()).subject.rfc4514_string()
    assert subject == "CN=vmmesh unit.mesh CA 2", "each generation has a name of its own"
    assert changed(run_role(ca_dir, mesh_ca_passphrase=PASSPHRASE, mesh_ca_rotation_phase="add")) == 0

    early = run_role(ca_dir, mesh_ca_passphrase=PASSPHRASE, mesh_ca_rotation_phase="remove")
    assert_failed_with(early, 'the rotation is at "added": run phase reissue first')

    assert changed(run_role(ca_dir, mesh_ca_passphrase=PASSPHRASE, mesh_ca_rotation_phase="reissue")) > 0
    assert state(ca_dir)["signer"] == 2
    assert changed(run_role(ca_dir, mesh_ca_passphrase=PASSPHRASE, mesh_ca_rotation_phase="reissue")) == 0

    assert changed(run_role(ca_dir, mesh_ca_passphrase=PASSPHRASE, mesh_ca_rotation_phase="remove")) > 0
    assert state(ca_dir) == {"format_version": 1, "signer": 2, "trusted": [2]}
    assert (ca_dir / "trust-bundle.pem").read_text() == signer2
    assert changed(run_role(ca_dir, mesh_ca_passphrase=PASSPHRASE, mesh_ca_rotation_phase="remove")) == 0
    assert (ca_dir / "generations" / "1" / "ca.pem").read_text() == signer1, "the old generation is kept"


def test_damaged_state_stops_with_the_file_and_the_fix(tmp_path: Path) -> None:
    directory = tmp_path / "ca"
    assert changed(run_role(directory)) > 0
    (directory / "state.json").write_text("{not json")
    result = run_role(directory)
    assert_failed_with(result, f"The mesh CA state {directory}/state.json on the controller cannot be read as JSON")
    (directory / "state.json").write_text('{"format_version": 1, "signer": 3, "trusted": [1]}')
    assert '"signer" must be one of them' in flat_output(run_role(directory))
    (directory / "state.json").write_text('{"format_version": 1, "signer": 1, "trusted": [1]}')
    (directory / "generations" / "1" / "ca.pem").unlink()
    missing = run_role(directory)
    assert f"{directory}/generations/1/ca.pem is missing on the controller" in flat_output(missing)
    assert "a CA is never recreated over an existing state" in flat_output(missing)
