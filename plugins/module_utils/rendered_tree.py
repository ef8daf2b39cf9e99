# Copyright (c) vmmesh.mesh contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""A directory that holds exactly a set of rendered files, replaced as a whole.

``compare_tree`` says which files would be added, changed or removed; ``replace_tree`` builds the new tree beside the
directory and swaps it in with two renames, so a reader sees either the complete old tree or the complete new one.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field


class RenderedTreeError(Exception):
    """A file name that would escape the directory, or a directory that cannot be replaced."""


@dataclass
class TreeChanges:
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)

    @property
    def any(self) -> bool:
        return bool(self.added or self.changed or self.removed)


def check_names(files: Mapping[str, str]) -> None:
    """Every name is a relative path inside the directory (no ``..``, no absolute path, no empty part)."""
    bad = sorted(
        name
        for name in files
        if not name or name.startswith("/") or any(part in ("", ".", "..") for part in name.split("/"))
    )
    if bad:
        raise RenderedTreeError(
            f"file names must be relative paths inside the directory, without '.', '..' or empty parts: {bad}"
        )


def read_tree(path: str) -> dict[str, bytes]:
    """Every regular file under ``path`` by its relative name; empty when ``path`` does not exist."""
    found: dict[str, bytes] = {}
    if not os.path.isdir(path):
        return found
    for directory, _subdirectories, names in os.walk(path):
        for name in names:
            full = os.path.join(directory, name)
            with open(full, "rb") as handle:
                found[os.path.relpath(full, path)] = handle.read()
    return found


def compare_tree(current: Mapping[str, bytes], wanted: Mapping[str, str]) -> TreeChanges:
    changes = TreeChanges()
    for name in sorted(wanted):
        if name not in current:
            changes.added.append(name)
        elif current[name] != wanted[name].encode():
            changes.changed.append(name)
    changes.removed = sorted(set(current) - set(wanted))
    return changes


def mode_changes(path: str, files: Mapping[str, str], mode: int) -> list[str]:
    """Files of ``files`` present under ``path`` whose mode is not ``mode``."""
    return sorted(
        name
        for name in files
        if os.path.isfile(os.path.join(path, name)) and os.stat(os.path.join(path, name)).st_mode & 0o7777 != mode
    )


def replace_tree(path: str, files: Mapping[str, str], mode: int, directory_mode: int) -> None:
    """Write ``files`` into a new directory beside ``path`` and swap it in."""
    parent = os.path.dirname(os.path.abspath(path)) or "/"
    base = os.path.basename(os.path.abspath(path))
    staging = tempfile.mkdtemp(prefix=f".{base}.new-", dir=parent)
    retired = None
    try:
        os.chmod(staging, directory_mode)
        for name, content in files.items():
            target = os.path.join(staging, name)
            os.makedirs(os.path.dirname(target), mode=directory_mode, exist_ok=True)
            with open(target, "w", encoding="utf-8") as handle:
                handle.write(content)
            os.chmod(target, mode)
        if os.path.lexists(path):
            retired = tempfile.mkdtemp(prefix=f".{base}.old-", dir=parent)
            os.rename(path, os.path.join(retired, base))
        os.rename(staging, path)
    except OSError as error:
        shutil.rmtree(staging, ignore_errors=True)
        if retired and not os.path.lexists(path) and os.path.lexists(os.path.join(retired, base)):
            os.rename(os.path.join(retired, base), path)
        raise RenderedTreeError(f"{path}: {error}; the previous content is left in place") from error
    finally:
        if retired:
            shutil.rmtree(retired, ignore_errors=True)
