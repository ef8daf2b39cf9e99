"""rendered_tree: a directory replaced as a whole, in the four steps (check, run, check again, run again)."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import pytest
from ansible_collections.vmmesh.mesh.plugins.modules import rendered_tree as module

FILES = {"plan.json": "{}\n", "hosts/web1/etc/envoy/web/lds.yaml": "resources: []\n"}


def _tree(run: Any, path: Path, files: dict, **args: Any) -> dict:
    return run(module.main, path=str(path), files=files, **args)


def _contents(path: Path) -> dict[str, str]:
    return {str(item.relative_to(path)): item.read_text() for item in path.rglob("*") if item.is_file()}


def test_four_steps_write_the_tree_once(run: Any, tmp_path: Path) -> None:
    target = tmp_path / "render"
    check = _tree(run, target, FILES, _ansible_check_mode=True, _ansible_diff=True)
    assert check["changed"] and check["added"] == sorted(FILES) and not target.exists()
    assert check["diff"]["after"] == "hosts/web1/etc/envoy/web/lds.yaml\nplan.json\n"
    assert _tree(run, target, FILES)["changed"]
    assert _contents(target) == FILES
    assert stat.S_IMODE((target / "plan.json").stat().st_mode) == 0o644
    assert not _tree(run, target, FILES, _ansible_check_mode=True)["changed"]
    assert not _tree(run, target, FILES)["changed"]
    assert sorted(item.name for item in tmp_path.iterdir()) == ["render"], "no staging directory is left behind"


def test_a_new_render_replaces_the_old_one_whole(run: Any, tmp_path: Path) -> None:
    target = tmp_path / "render"
    _tree(run, target, FILES)
    wanted = {"plan.json": '{"v": 2}\n', "graph.dot": "digraph {}\n"}
    result = _tree(run, target, wanted, _ansible_diff=True)
    assert (result["added"], result["changed_files"], result["removed"]) == (
        ["graph.dot"],
        ["plan.json"],
        ["hosts/web1/etc/envoy/web/lds.yaml"],
    )
    assert _contents(target) == wanted
    assert result["diff"]["before"] == "hosts/web1/etc/envoy/web/lds.yaml\nplan.json\n"


def test_a_wrong_mode_alone_is_a_change(run: Any, tmp_path: Path) -> None:
    target = tmp_path / "render"
    _tree(run, target, FILES)
    (target / "plan.json").chmod(0o600)
    result = _tree(run, target, FILES)
    assert result["changed"] and result["changed_files"] == ["plan.json"]
    assert stat.S_IMODE((target / "plan.json").stat().st_mode) == 0o644


@pytest.mark.parametrize("name", ["../escape", "/etc/passwd", "a//b", "a/./b", ""])
def test_names_outside_the_directory_are_refused(run: Any, tmp_path: Path, name: str) -> None:
    result = _tree(run, tmp_path / "render", {name: "x"})
    assert result["failed"] and "file names must be relative paths inside the directory" in result["msg"]
    assert not (tmp_path / "render").exists()


def test_a_bad_mode_names_the_option(run: Any, tmp_path: Path) -> None:
    result = _tree(run, tmp_path / "render", FILES, mode="rw-r--r--")
    assert (
        result["failed"]
        and result["msg"] == "mode is 'rw-r--r--': give an octal mode as a quoted string, such as '0644'"
    )
