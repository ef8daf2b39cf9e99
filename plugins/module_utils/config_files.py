# Copyright (c) vmmesh.mesh contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""A set of configuration files kept in place under one directory, each file renamed into place.

Unlike ``rendered_tree`` (a directory swapped whole), the directories stay where they are: a program watching a
file (Envoy's filesystem xDS and SDS) sees each changed file arrive by a rename in its own directory, and files
not named are left alone. ``plan_files`` says what would change; ``apply_files`` makes it so.
"""

from __future__ import annotations

import grp
import os
import pwd
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field


class ConfigFilesError(Exception):
    """A path outside the root, an unknown owner or group, or a file that cannot be written."""


def parse_mode(value: object, name: str) -> int:
    """An octal mode given as a string ('0640') or an integer."""
    try:
        return int(value, 8) if isinstance(value, str) else int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        raise ConfigFilesError(f"{name} is {value!r}: give an octal mode as a quoted string, such as '0644'") from None


@dataclass(frozen=True)
class Ownership:
    """Mode, user and group (None: leave as created) of the files or of the directories.

    ``unresolved``: an owner or group that does not exist yet, accepted only to say what would change (check mode,
    where the task that creates it did not run): every existing path then differs.
    """

    mode: int
    uid: int | None = None
    gid: int | None = None
    unresolved: bool = False

    @classmethod
    def named(cls, mode: int, owner: str | None, group: str | None, missing_ok: bool = False) -> Ownership:
        unresolved = False
        try:
            uid = pwd.getpwnam(owner).pw_uid if owner else None
        except KeyError:
            if not missing_ok:
                raise ConfigFilesError(f"owner {owner!r} is not a user on this host; create it first") from None
            uid, unresolved = None, True
        try:
            gid = grp.getgrnam(group).gr_gid if group else None
        except KeyError:
            if not missing_ok:
                raise ConfigFilesError(f"group {group!r} is not a group on this host; create it first") from None
            gid, unresolved = None, True
        return cls(mode, uid, gid, unresolved)

    def differs(self, path: str) -> bool:
        found = os.stat(path)
        return (
            self.unresolved
            or found.st_mode & 0o7777 != self.mode
            or (self.uid is not None and found.st_uid != self.uid)
            or (self.gid is not None and found.st_gid != self.gid)
        )

    def apply(self, path: str) -> None:
        if self.unresolved:
            raise ConfigFilesError("an owner or group of the files is not on this host; create it first")
        os.chown(path, -1 if self.uid is None else self.uid, -1 if self.gid is None else self.gid)
        os.chmod(path, self.mode)


@dataclass
class FilesPlan:
    """What ``apply_files`` would do: paths by kind of change, and each changed file's previous content."""

    directories: list[str] = field(default_factory=list)
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    attributes: list[str] = field(default_factory=list)
    before: dict[str, str] = field(default_factory=dict)

    @property
    def any(self) -> bool:
        return bool(self.directories or self.added or self.changed or self.attributes)


def _inside(root: str, path: str) -> bool:
    return os.path.isabs(path) and os.path.commonpath([root, path]) == root and path != root


def directories_of(root: str, paths: list[str]) -> list[str]:
    """The root and every directory between it and the files, parents first."""
    found = {root}
    for path in paths:
        parent = os.path.dirname(path)
        while parent != root and _inside(root, parent):
            found.add(parent)
            parent = os.path.dirname(parent)
    return sorted(found, key=lambda item: (item.count("/"), item))


def check_paths(root: str, files: Mapping[str, str]) -> None:
    """Every file is an absolute, normalised path strictly inside ``root``."""
    bad = sorted(path for path in files if os.path.normpath(path) != path or not _inside(root, path))
    if bad:
        raise ConfigFilesError(f"files must be normalised absolute paths inside {root}: {bad}")


def plan_files(
    root: str, files: Mapping[str, str], file_attributes: Ownership, directory_attributes: Ownership
) -> FilesPlan:
    check_paths(root, files)
    plan = FilesPlan()
    for directory in directories_of(root, list(files)):
        if not os.path.isdir(directory) or directory_attributes.differs(directory):
            plan.directories.append(directory)
    for path in sorted(files):
        if not os.path.isfile(path):
            plan.added.append(path)
            continue
        with open(path, encoding="utf-8", errors="replace") as handle:
            current = handle.read()
        if current != files[path]:
            plan.changed.append(path)
            plan.before[path] = current
        elif file_attributes.differs(path):
            plan.attributes.append(path)
    return plan


def write_atomically(path: str, content: str, attributes: Ownership) -> None:
    """Write beside ``path`` and rename into place: a reader sees the old file or the new one, whole."""
    descriptor, staging = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", dir=os.path.dirname(path))
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        attributes.apply(staging)
        os.rename(staging, path)
    except OSError:
        if os.path.lexists(staging):
            os.unlink(staging)
        raise


def apply_files(
    plan: FilesPlan, files: Mapping[str, str], file_attributes: Ownership, directory_attributes: Ownership
) -> None:
    """Carry out ``plan``: directories first, then each new or changed file renamed into place."""
    try:
        for directory in plan.directories:
            os.makedirs(directory, exist_ok=True)
            directory_attributes.apply(directory)
        for path in plan.added + plan.changed:
            write_atomically(path, files[path], file_attributes)
        for path in plan.attributes:
            file_attributes.apply(path)
    except OSError as error:
        raise ConfigFilesError(f"{error}; files not reached yet keep their previous content") from error
