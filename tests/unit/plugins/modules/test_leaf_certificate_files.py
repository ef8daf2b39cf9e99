"""leaf_certificate_files: install a leaf atomically, in the four steps (check, run, check again, run again)."""

from __future__ import annotations

import grp
import os
import pwd
import stat
from pathlib import Path
from typing import Any

import pytest
from ansible_collections.vmmesh.mesh.plugins.modules import leaf_certificate_files as module

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the module keeps the directory owned by root")

OWNER = pwd.getpwuid(os.getuid()).pw_name
GROUP = grp.getgrgid(os.getgid()).gr_name


def _staged(directory: Path) -> Path:
    return directory.parent / f".{directory.name}.key.pem.next"


def _stage(directory: Path, ca: Any, pki: Any, **issue: Any) -> tuple[str, bytes]:
    """A staged key for ``directory`` and a certificate for it; returns (certificate, key bytes)."""
    key = pki.new_key()
    key_pem = pki.private_key_pem(key)
    _staged(directory).write_bytes(key_pem)
    return ca.issue(key.public_key(), **issue), key_pem


def _files(run: Any, directory: Path, **args: Any) -> dict:
    return run(module.main, path=str(directory), owner=OWNER, group=GROUP, **args)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_four_steps_install_a_new_certificate(tmp_path: Path, run: Any, pki: Any, ca: Any) -> None:
    directory = tmp_path / "web"
    certificate, key_pem = _stage(directory, ca, pki)
    args = {"certificate": certificate, "trust_bundle": [ca.pem], "combined_pem": True}

    checked = _files(run, directory, _ansible_check_mode=True, _ansible_diff=True, **args)
    assert checked["changed"] is True and checked["certificate_installed"] is True
    assert sorted(checked["changed_files"]) == [".", "ca-bundle.pem", "cert.pem", "haproxy.pem", "key.pem"]
    assert "PRIVATE KEY" not in str(checked)
    assert not directory.exists() and _staged(directory).exists(), "check mode writes nothing"

    done = _files(run, directory, _ansible_diff=True, **args)
    assert done["changed"] is True and done["certificate_installed"] is True
    assert sorted(done["changed_files"]) == [".", "ca-bundle.pem", "cert.pem", "haproxy.pem", "key.pem"]
    assert "key.pem: a new private key (content not shown)" in done["diff"]["after"]
    assert "PRIVATE KEY" not in str(done)
    assert sorted(os.listdir(directory)) == ["ca-bundle.pem", "cert.pem", "haproxy.pem", "key.pem"]
    assert not _staged(directory).exists()
    assert (directory / "key.pem").read_bytes() == key_pem
    assert (directory / "cert.pem").read_text() == certificate.strip() + "\n"
    assert (directory / "haproxy.pem").read_bytes() == (directory / "cert.pem").read_bytes() + key_pem
    assert (directory / "ca-bundle.pem").read_text() == ca.pem.strip() + "\n"
    modes = {name: _mode(directory / name) for name in os.listdir(directory)}
    assert modes == {"ca-bundle.pem": 0o644, "cert.pem": 0o644, "haproxy.pem": 0o600, "key.pem": 0o600}
    assert _mode(directory) == 0o750

    # Again, without a new certificate: nothing to do, in check mode or not.
    again = {"trust_bundle": [ca.pem], "combined_pem": True}
    assert _files(run, directory, _ansible_check_mode=True, **again)["changed"] is False
    assert _files(run, directory, **again) == {
        "changed": False,
        "changed_files": [],
        "certificate_installed": False,
        "invocation": _files(run, directory, **again)["invocation"],
    }


def test_trust_bundle_grows_and_shrinks(tmp_path: Path, run: Any, pki: Any, ca: Any, next_ca: Any) -> None:
    directory = tmp_path / "api"
    directory.mkdir()
    certificate, _key = _stage(directory, ca, pki)
    _files(run, directory, certificate=certificate, trust_bundle=[ca.pem])
    grown = _files(run, directory, trust_bundle=[ca.pem, next_ca.pem])
    assert grown["changed_files"] == ["ca-bundle.pem"]
    assert (directory / "ca-bundle.pem").read_text() == ca.pem.strip() + "\n" + next_ca.pem.strip() + "\n"
    assert _files(run, directory, trust_bundle=[next_ca.pem])["changed_files"] == ["ca-bundle.pem"]
    assert _files(run, directory)["changed"] is False, "an omitted bundle is left alone"


def test_haproxy_bundle_goes_away_when_not_wanted(tmp_path: Path, run: Any, pki: Any, ca: Any) -> None:
    directory = tmp_path / "web"
    directory.mkdir()
    certificate, _key = _stage(directory, ca, pki)
    _files(run, directory, certificate=certificate, combined_pem=True)
    removed = _files(run, directory, combined_pem=False)
    assert removed["changed_files"] == ["haproxy.pem"] and not (directory / "haproxy.pem").exists()


def test_attributes_are_put_back(tmp_path: Path, run: Any, pki: Any, ca: Any) -> None:
    directory = tmp_path / "api"
    directory.mkdir()
    certificate, _key = _stage(directory, ca, pki)
    _files(run, directory, certificate=certificate)
    (directory / "key.pem").chmod(0o644)
    directory.chmod(0o755)
    fixed = _files(run, directory)
    assert fixed["changed_files"] == [".", "key.pem"]
    assert _mode(directory / "key.pem") == 0o600 and _mode(directory) == 0o750


def test_a_leftover_staged_key_is_removed(tmp_path: Path, run: Any, pki: Any, ca: Any) -> None:
    directory = tmp_path / "api"
    directory.mkdir()
    certificate, _key = _stage(directory, ca, pki)
    _files(run, directory, certificate=certificate)
    _stage(directory, ca, pki)
    cleaned = _files(run, directory, _ansible_diff=True)
    assert cleaned["changed_files"] == [".api.key.pem.next"] and not _staged(directory).exists()
    assert "staged key: absent" in cleaned["diff"]["after"]


def test_a_certificate_for_another_key_is_refused(tmp_path: Path, run: Any, pki: Any, ca: Any) -> None:
    directory = tmp_path / "api"
    directory.mkdir()
    _stage(directory, ca, pki)
    other = ca.issue(pki.new_key().public_key())
    result = _files(run, directory, certificate=other)
    assert result["failed"] is True
    assert "does not belong to the staged key" in result["msg"] and "sign it again" in result["msg"]
    assert os.listdir(directory) == [], "nothing was written"


@pytest.mark.parametrize(
    ("prepare", "args", "expected"),
    [
        pytest.param("nothing", {"certificate": "x"}, "there is no staged key", id="no-staged-key"),
        pytest.param("garbage-key", {"certificate": "x"}, "certificate: not a PEM certificate", id="bad-certificate"),
        pytest.param("no-parent", {}, "does not exist; create it first", id="no-parent"),
        pytest.param(
            "nothing", {"owner": "no-such-user-vmmesh"}, "user 'no-such-user-vmmesh' does not exist", id="user"
        ),
        pytest.param(
            "nothing", {"group": "no-such-group-vmmesh"}, "group 'no-such-group-vmmesh' does not exist", id="group"
        ),
    ],
)
def test_errors(tmp_path: Path, run: Any, pki: Any, prepare: str, args: dict, expected: str) -> None:
    directory = tmp_path / "api" if prepare != "no-parent" else tmp_path / "missing" / "api"
    if prepare != "no-parent":
        directory.mkdir()
    if prepare == "garbage-key":
        _staged(directory).write_bytes(pki.private_key_pem(pki.new_key()))
    result = run(module.main, **{"path": str(directory), "owner": OWNER, "group": GROUP, **args})
    assert result["failed"] is True and expected in result["msg"], result


def test_check_mode_on_a_fresh_host(tmp_path: Path, run: Any) -> None:
    result = _files(run, tmp_path / "missing", trust_bundle=["x"], _ansible_check_mode=True)
    assert result["changed"] is True and not (tmp_path / "missing").exists()
    unknown = run(module.main, path=str(tmp_path), owner="no-such-user-vmmesh", group=GROUP, _ansible_check_mode=True)
    assert unknown["changed"] is True and unknown["changed_files"] == ["."], "a warning, not a failure, in check mode"
