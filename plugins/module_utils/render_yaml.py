# Copyright (c) vmmesh.mesh contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Deterministic YAML and JSON text for configuration files.

A small YAML emitter for the data the renderers build (mappings, lists, strings, integers, booleans, None). It keeps
the mapping order the renderer chose, writes block style, and quotes every string that a YAML 1.1 or 1.2 reader could
take for anything but that string (as a JSON string, which is valid YAML). It exists because PyYAML's emitter is an
order of magnitude too slow for meshes of 10,000 services; tests check that ``yaml.safe_load(to_yaml(x)) == x``.

:func:`to_json` writes sorted, indented JSON whose innermost records (mappings and lists of scalars only) sit on one
line each: readable, and fast because those lines come from the C encoder.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from typing import Any

_PLAIN = re.compile(r"^[A-Za-z_/][A-Za-z0-9_./-]*$")
_RESERVED = frozenset(
    word
    for base in ("true", "false", "yes", "no", "on", "off", "null", "y", "n", "nan", "inf")
    for word in (base, base.capitalize(), base.upper())
)
# Characters a YAML double-quoted scalar may not hold raw (not printable, or a line break to YAML 1.1).
_UNSAFE_IN_QUOTES = re.compile(
    "[^\t\n\r\x20-\x7e\xa0-\u2027\u202a-\ud7ff\ue000-\ufefe\uff00-\ufffd\U00010000-\U0010ffff]"
)
_CONTAINERS = (dict, list, tuple)
_encode_string = json.encoder.encode_basestring  # the C implementation when available


def to_yaml(data: Any, header: str = "") -> str:
    """Render ``data`` as a YAML document; ``header`` lines become ``#`` comments at the top."""
    lines = comment_lines(header)
    if isinstance(data, (dict, list, tuple)) and data:
        _block(data, "", lines)
    else:
        lines.append(_scalar(data))
    return "\n".join(lines) + "\n"


def comment_lines(header: str) -> list[str]:
    return ["# " + line if line else "#" for line in header.splitlines()]


def yaml_items(items: list[Any], indent: str = "  ") -> list[str]:
    """Lines of the block sequence ``items`` at ``indent``, to splice under a ``key:`` line."""
    lines: list[str] = []
    if items:
        _block(items, indent, lines)
    return lines


def yaml_mapping(mapping: dict, indent: str) -> list[str]:
    """Lines of the block mapping ``mapping`` at ``indent``, to splice into an enclosing mapping."""
    lines: list[str] = []
    if mapping:
        _block(mapping, indent, lines)
    return lines


@lru_cache(maxsize=65536)
def _string(value: str) -> str:
    if _PLAIN.fullmatch(value) and value not in _RESERVED:
        return value
    return _UNSAFE_IN_QUOTES.sub(_escape, json.dumps(value, ensure_ascii=False))


def _escape(match: re.Match) -> str:
    return f"\\u{ord(match.group()):04x}"


def _scalar(value: Any) -> str:
    kind = type(value)
    if kind is str:
        return _string(value)
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if kind is int:
        return str(value)
    if kind is float:
        return json.dumps(value)
    if isinstance(value, str):
        return _string(str(value))
    if isinstance(value, int):
        return str(int(value))
    if isinstance(value, dict):
        return "{}"
    if isinstance(value, (list, tuple)):
        return "[]"
    raise TypeError(f"cannot render {value!r} as YAML")


def _block(value: Any, indent: str, out: list[str]) -> None:
    inner = indent + "  "
    if isinstance(value, dict):
        for key, item in value.items():
            name = _string(str(key))
            if item and isinstance(item, _CONTAINERS):
                out.append(f"{indent}{name}:")
                _block(item, inner, out)
            else:
                out.append(f"{indent}{name}: {_scalar(item)}")
        return
    for item in value:
        if item and isinstance(item, _CONTAINERS):
            start = len(out)
            _block(item, inner, out)
            out[start] = indent + "- " + out[start][len(inner) :]
        else:
            out.append(f"{indent}- {_scalar(item)}")


def to_json(data: Any) -> str:
    """Sorted, indented JSON with leaf records on one line."""
    lines: list[str] = []
    _json(data, "", lines, "")
    return "\n".join(lines) + "\n"


def _compact(value: Any) -> str:
    """One-line JSON (``", "`` and ``": "`` separators, sorted keys), faster than the encoder for small records."""
    if isinstance(value, str):
        return _encode_string(value)
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return int.__repr__(value)
    if isinstance(value, float):
        return json.dumps(value)
    if isinstance(value, dict):
        return "{" + ", ".join(_encode_string(str(key)) + ": " + _compact(value[key]) for key in sorted(value)) + "}"
    return "[" + ", ".join(_compact(item) for item in value) + "]"


def _is_leaf(value: Any) -> bool:
    items = value.values() if isinstance(value, dict) else value
    return not any(item and isinstance(item, _CONTAINERS) for item in items)


def _json(value: Any, indent: str, out: list[str], prefix: str) -> None:
    if not isinstance(value, _CONTAINERS) or _is_leaf(value):
        out.append(indent + prefix + _compact(value))
        return
    inner = indent + "  "
    if isinstance(value, dict):
        out.append(indent + prefix + "{")
        keys = sorted(value)
        last = len(keys) - 1
        for index, key in enumerate(keys):
            _json(value[key], inner, out, _encode_string(str(key)) + ": ")
            if index < last:
                out[-1] += ","
        out.append(indent + "}")
        return
    out.append(indent + prefix + "[")
    last = len(value) - 1
    for index, item in enumerate(value):
        _json(item, inner, out, "")
        if index < last:
            out[-1] += ","
    out.append(indent + "]")
