"""config_files: files renamed into place under a directory that stays, in the four steps."""

from __future__ import annotations

import grp
import os
import pwd
import stat
from pathlib import Path
from typing import Any

import pytest
from ansible_collections.vmmesh.mesh.plugins.modules import config_files as module


def _files(root: Path) -> dict[str, str]:
    return {
        str(root / "web" / "lds.yaml"): "resources: []\n",
        str(root / "web" / "sds" / "tls_cert.yaml"): "resources: [cert]\n",
        str(root / "web" / "envoy.yaml"): "admin: {}\n",
    }


def _write(run: Any, root: Path, files: dict, **args: Any) -> dict:
    return run(module.main, root=str(root), files=files, **args)


def test_four_steps_write_each_file_once(run: Any, tmp_path: Path) -> None:
    root = tmp_path / "envoy"
    files = _files(root)
    check = _write(run, root, files, _ansible_check_mode=True, _ansible_diff=True)
    assert check["changed"] and check["added"] == sorted(files) and not root.exists()
    assert check["directories"] == [str(root), str(root / "web"), str(root / "web" / "sds")]
    assert {diff["after_header"]: diff["after"] for diff in check["diff"]}[str(root / "web" / "lds.yaml")] == (
        "resources: []\n"
    )
    assert _write(run, root, files, mode="0640", directory_mode="0750")["changed"]
    assert {path: Path(path).read_text() for path in files} == files
    assert stat.S_IMODE((root / "web" / "lds.yaml").stat().st_mode) == 0o640
    assert stat.S_IMODE((root / "web" / "sds").stat().st_mode) == 0o750
    again = {"mode": "0640", "directory_mode": "0750"}
    assert not _write(run, root, files, _ansible_check_mode=True, **again)["changed"]
    assert not _write(run, root, files, **again)["changed"]
    assert sorted(os.listdir(root / "web")) == ["envoy.yaml", "lds.yaml", "sds"], "no temporary file is left"


def test_a_changed_file_is_renamed_into_place_and_others_are_left_alone(run: Any, tmp_path: Path) -> None:
    root = tmp_path / "envoy"
    files = _files(root)
    _write(run, root, files)
    lds = root / "web" / "lds.yaml"
    inode_lds, inode_cert = lds.stat().st_ino, (root / "web" / "sds" / "tls_cert.yaml").stat().st_ino
    (root / "web" / "unmanaged.txt").write_text("mine\n")
    wanted = {**files, str(lds): "resources: [listener]\n"}
    result = _write(run, root, wanted, _ansible_diff=True)
    assert (result["added"], result["changed_files"]) == ([], [str(lds)])
    assert result["diff"] == [
        {
            "before_header": str(lds),
            "after_header": str(lds),
            "before": "resources: []\n",
            "after": "resources: [listener]\n",
        }
    ]
    assert lds.read_text() == "resources: [listener]\n"
    assert lds.stat().st_ino != inode_lds, "a watcher sees a rename, not an edit in place"
    assert (root / "web" / "sds" / "tls_cert.yaml").stat().st_ino == inode_cert, "an unchanged file is not touched"
    assert (root / "web" / "unmanaged.txt").read_text() == "mine\n"


def test_diff_names_only_when_contents_are_secret(run: Any, tmp_path: Path) -> None:
    root = tmp_path / "keys"
    path = str(root / "key.pem")
    result = _write(run, root, {path: "SECRET\n"}, diff_contents=False, _ansible_diff=True)
    assert "SECRET" not in str(result["diff"])
    assert {diff["after_header"] for diff in result["diff"]} == {str(root), path}


def test_a_wrong_mode_or_group_alone_is_a_change(run: Any, tmp_path: Path) -> None:
    root = tmp_path / "envoy"
    files = _files(root)
    group = grp.getgrgid(os.getgid()).gr_name
    _write(run, root, files, group=group, mode="0640")
    (root / "web" / "envoy.yaml").chmod(0o600)
    result = _write(run, root, files, group=group, mode="0640")
    assert result["changed"] and result["changed_files"] == [str(root / "web" / "envoy.yaml")]
    assert stat.S_IMODE((root / "web" / "envoy.yaml").stat().st_mode) == 0o640


@pytest.mark.parametrize("name", ["/etc/passwd", "{root}", "{root}/../escape", "{root}/a//b", "relative/file"])
def test_paths_outside_the_root_are_refused(run: Any, tmp_path: Path, name: str) -> None:
    root = tmp_path / "envoy"
    result = _write(run, root, {name.format(root=root): "x"})
    assert result["failed"] and result["msg"].startswith(f"files must be normalised absolute paths inside {root}")
    assert not root.exists()


def test_an_unknown_group_is_named_before_anything_is_written(run: Any, tmp_path: Path) -> None:
    root = tmp_path / "envoy"
    result = _write(run, root, _files(root), group="no-such-group-vmmesh")
    assert (
        result["failed"]
        and result["msg"] == "group 'no-such-group-vmmesh' is not a group on this host; create it first"
    )
    assert not root.exists()


def test_check_mode_accepts_an_owner_and_group_an_earlier_task_would_create(run: Any, tmp_path: Path) -> None:
    # a check run on a fresh host: the task that creates the sidecar's user did not run
    root = tmp_path / "envoy"
    missing = {"owner": "no-such-user-vmmesh", "group": "no-such-group-vmmesh"}
    check = _write(run, root, _files(root), _ansible_check_mode=True, **missing)
    assert not check.get("failed") and check["changed"] and check["added"] == sorted(_files(root))
    assert not root.exists()
    # on files already there, every one would change: their owner is not the one asked for
    assert not _write(run, root, _files(root)).get("failed")
    again = _write(run, root, _files(root), _ansible_check_mode=True, **missing)
    assert again["changed"] and again["changed_files"] == sorted(_files(root))


def test_an_unknown_owner_is_named(run: Any, tmp_path: Path) -> None:
    assert pwd.getpwuid(os.getuid())
    result = _write(run, tmp_path / "envoy", _files(tmp_path / "envoy"), owner="no-such-user-vmmesh")
    assert result["failed"] and "owner 'no-such-user-vmmesh' is not a user on this host" in result["msg"]


def test_a_bad_mode_names_the_option(run: Any, tmp_path: Path) -> None:
    result = _write(run, tmp_path / "envoy", _files(tmp_path / "envoy"), directory_mode="rwx")
    assert result["failed"] and result["msg"] == (
        "directory_mode is 'rwx': give an octal mode as a quoted string, such as '0644'"
    )
