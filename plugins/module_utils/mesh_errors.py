# Copyright (c) vmmesh.mesh contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Errors of the mesh compiler.

Every problem found in the ``mesh`` variable is a value of one error class. It carries the exact key path
(``mesh.services.web.upstreams[0].service``), the bad value, what is wrong with it and how to fix it, and renders as
one line::

    mesh.services.web.upstreams[0].service: unknown service 'apii'; did you mean 'api'?

The validator collects every error before it gives up and raises one :class:`MeshValidationError` holding all of them.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Sequence
from typing import Any, ClassVar

_PLAIN_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def key_path(base: str, *parts: Any) -> str:
    """Extend a key path: strings become ``.key`` (or ``["odd key"]``), integers become ``[index]``."""
    path = base
    for part in parts:
        if isinstance(part, int) and not isinstance(part, bool):
            path += f"[{part}]"
        elif isinstance(part, str) and _PLAIN_KEY.match(part):
            path += "." + part
        else:
            path += f"[{part!r}]"
    return path


def did_you_mean(value: Any, candidates: Iterable[str], default_fix: str) -> str:
    """Return "did you mean 'x'?" for the closest candidate, else ``default_fix``."""
    if isinstance(value, str):
        names = sorted(candidates)
        matches = difflib.get_close_matches(value, names, n=1, cutoff=0.6)
        if not matches:
            # a whole word of a longer name, such as 'on' of 'retry_on'
            matches = [name for name in names if value and value in name.split("_")]
        if len(matches) == 1:
            return f"did you mean {matches[0]!r}?"
    return default_fix


def describe(value: Any) -> str:
    """Short, safe rendering of a bad value for a message."""
    text = repr(value)
    if len(text) > 80:
        text = text[:77] + "..."
    return text


class MeshError(Exception):
    """One problem in the mesh model: where it is, what was found, what is wrong and how to fix it."""

    code: ClassVar[str] = "mesh"

    def __init__(self, path: str, value: Any, problem: str, fix: str) -> None:
        self.path = path
        self.value = value
        self.problem = problem
        self.fix = fix
        super().__init__(self.message)

    @property
    def message(self) -> str:
        return f"{self.path}: {self.problem}; {self.fix}"

    def __str__(self) -> str:
        return self.message

    def as_dict(self) -> dict:
        return {"code": self.code, "path": self.path, "problem": self.problem, "fix": self.fix, "message": self.message}


class MissingKeyError(MeshError):
    code = "missing_key"


class UnknownKeyError(MeshError):
    code = "unknown_key"


class InvalidTypeError(MeshError):
    code = "invalid_type"


class InvalidValueError(MeshError):
    """A value outside its allowed set or pattern (enums, names, addresses, paths)."""

    code = "invalid_value"


class OutOfRangeError(MeshError):
    code = "out_of_range"


class InvalidDurationError(MeshError):
    code = "invalid_duration"


class UnknownServiceError(MeshError):
    code = "unknown_service"


class UnknownGroupError(MeshError):
    code = "unknown_group"


class UnknownHostError(MeshError):
    code = "unknown_host"


class EmptyGroupError(MeshError):
    code = "empty_group"


class MissingAddressError(MeshError):
    code = "missing_address"


class DuplicateError(MeshError):
    """The same upstream, intention or inventory host named twice where once is meant."""

    code = "duplicate"


class PortCollisionError(MeshError):
    code = "port_collision"


class PortRangeExhaustedError(MeshError):
    code = "port_range_exhausted"


class L7PolicyOnTcpError(MeshError):
    code = "l7_policy_on_tcp"


class SplitWeightError(MeshError):
    code = "split_weight"


class UnknownSubsetError(MeshError):
    code = "unknown_subset"


class DeniedUpstreamError(MeshError):
    code = "denied_upstream"


class UnsupportedBySidecarError(MeshError):
    code = "unsupported_by_sidecar"


class MeshValidationError(Exception):
    """Every error found in one validation run."""

    def __init__(self, errors: Sequence[MeshError]) -> None:
        self.errors: list[MeshError] = list(errors)
        super().__init__(self.message)

    @property
    def message(self) -> str:
        count = len(self.errors)
        head = f"the mesh model has {count} error{'' if count == 1 else 's'}:"
        return "\n".join([head] + ["  - " + error.message for error in self.errors])

    def __str__(self) -> str:
        return self.message


class ErrorCollector:
    """Collects errors (and warnings) during one validation run, in the order they are found."""

    def __init__(self) -> None:
        self.errors: list[MeshError] = []
        self.warnings: list[str] = []

    def add(self, error: MeshError) -> None:
        self.errors.append(error)

    def warn(self, message: str) -> None:
        self.warnings.append(message)

    def raise_if_any(self) -> None:
        if self.errors:
            raise MeshValidationError(self.errors)

    def __len__(self) -> int:
        return len(self.errors)
