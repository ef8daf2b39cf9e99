# Copyright (c) vmmesh.mesh contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Keeping the mesh's registrations in a local Consul agent: wanted definitions, what the agent holds, the changes.

Definitions come in the form of a Consul service definition file (``render_consul``: lowercase keys ``id``,
``name``, ``address``, ``port``, ``tags``, ``meta``, ``checks`` with ``http``/``grpc``/``tcp``). They become the
agent API's payload (:func:`api_payload`), which carries in its meta ``vmmesh_definition``, a digest of the whole
definition: the agent's API never returns a check's target (its URL or address), so the digest is how a changed
target is noticed.

What the agent returns (``/v1/agent/services`` and ``/v1/agent/checks``) and what is wanted are brought to one
shape (:func:`normalise_agent`, :func:`normalise_wanted`): sorted tags, durations in milliseconds, checks by ID with
their name, type, interval and timeout. Equal shapes mean nothing to do. Only registrations whose meta
``vmmesh_mesh`` names this mesh are ever removed.

:class:`AgentClient` talks to the agent through a ``request`` callable (method, path, body, token) so that the
logic runs against small fakes in unit tests and against the real agent in molecule.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

MESH_META = "vmmesh_mesh"
DIGEST_META = "vmmesh_definition"
_CHECK_KINDS = ("http", "grpc", "tcp")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNIT_MS = {"ns": 1e-6, "us": 1e-3, "µs": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60000.0, "h": 3600000.0}
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


class ConsulDefinitionError(ValueError):
    """A wanted definition the agent would refuse; the message names the key path, the value and the fix."""


class ConsulAgentError(RuntimeError):
    """The agent answered with an error; the message says which request, the status and the agent's words."""


# ----------------------------------------------------------------------------------------------------------------
# Durations and checks
# ----------------------------------------------------------------------------------------------------------------


def duration_ms(text: str | int | None) -> int | None:
    """A Go duration (``10s``, ``1m0s``, ``500ms``, ``1.5s``) in milliseconds; None for an empty one."""
    if text is None or text == "":
        return None
    if isinstance(text, int):
        return text
    value = str(text).strip()
    if value == "0":
        return 0
    parts = _DURATION_PART.findall(value)
    if not parts or "".join(number + unit for number, unit in parts) != value:
        raise ConsulDefinitionError(f"{value!r} is not a duration; write it as Consul does, e.g. '10s' or '500ms'")
    return round(sum(float(number) * _UNIT_MS[unit] for number, unit in parts))


def _check_kind(check: Mapping[str, Any], where: str) -> str:
    kinds = [kind for kind in _CHECK_KINDS if check.get(kind)]
    if len(kinds) != 1:
        raise ConsulDefinitionError(
            f"{where}: a check needs exactly one of http, grpc or tcp (found {kinds or 'none'}); "
            "the mesh registers HTTP, gRPC and TCP checks only"
        )
    return kinds[0]


# ----------------------------------------------------------------------------------------------------------------
# Wanted definitions
# ----------------------------------------------------------------------------------------------------------------


def _where(index: int, key: str | None = None) -> str:
    return f"services[{index}]" + (f".{key}" if key else "")


def _validate(definition: Mapping[str, Any], index: int, mesh: str) -> None:
    if not isinstance(definition, Mapping):
        raise ConsulDefinitionError(f"{_where(index)}: {definition!r} is not a mapping; give a service definition")
    for key in ("id", "name"):
        value = definition.get(key)
        if not isinstance(value, str) or not _ID.match(value):
            raise ConsulDefinitionError(
                f"{_where(index, key)}: {value!r} is not a service {key}; use letters, digits, '.', '_' and '-'"
            )
    port = definition.get("port")
    if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
        raise ConsulDefinitionError(f"{_where(index, 'port')}: {port!r} is not a port; use an integer 1-65535")
    meta = definition.get("meta") or {}
    if not isinstance(meta, Mapping) or not all(isinstance(v, str) for v in meta.values()):
        raise ConsulDefinitionError(f"{_where(index, 'meta')}: {meta!r}; meta must map names to strings")
    if meta.get(MESH_META, mesh) != mesh:
        raise ConsulDefinitionError(
            f"{_where(index, 'meta')}.{MESH_META}: {meta[MESH_META]!r} is not this mesh ({mesh!r}); "
            "register each mesh's services with its own name"
        )
    if DIGEST_META in meta:
        raise ConsulDefinitionError(f"{_where(index, 'meta')}.{DIGEST_META}: reserved, the module sets it; remove it")
    for number, check in enumerate(definition.get("checks") or []):
        where = _where(index, f"checks[{number}]")
        if not isinstance(check, Mapping) or not isinstance(check.get("id"), str):
            raise ConsulDefinitionError(f"{where}: {check!r} needs an id")
        _check_kind(check, where)
        for key in ("interval", "timeout"):
            try:
                duration_ms(check.get(key))
            except ConsulDefinitionError as error:
                raise ConsulDefinitionError(f"{where}.{key}: {error}") from None


def _check_payload(check: Mapping[str, Any]) -> dict[str, Any]:
    payload: dict[str, Any] = {"CheckID": check["id"], "Name": check.get("name") or check["id"]}
    kind = _check_kind(check, check["id"])
    if kind == "http":
        payload["HTTP"] = check["http"]
        payload["Method"] = check.get("method") or "GET"
        if check.get("tls_skip_verify") is not None:
            payload["TLSSkipVerify"] = bool(check["tls_skip_verify"])
    elif kind == "grpc":
        payload["GRPC"] = check["grpc"]
        payload["GRPCUseTLS"] = bool(check.get("grpc_use_tls", False))
    else:
        payload["TCP"] = check["tcp"]
    for key, api_key in (("interval", "Interval"), ("timeout", "Timeout")):
        if check.get(key):
            payload[api_key] = str(check[key])
    if check.get("deregister_critical_service_after"):
        payload["DeregisterCriticalServiceAfter"] = str(check["deregister_critical_service_after"])
    return payload


def definition_digest(payload: Mapping[str, Any]) -> str:
    """sha256 (first 16 hex digits) of the payload without its digest, keys sorted."""
    meta = {key: value for key, value in payload.get("Meta", {}).items() if key != DIGEST_META}
    body = dict(payload, Meta=meta)
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]


def api_payload(definition: Mapping[str, Any], mesh: str) -> dict[str, Any]:
    """The ``PUT /v1/agent/service/register`` body of a definition file's service, owned by ``mesh``."""
    meta = {str(key): str(value) for key, value in (definition.get("meta") or {}).items()}
    meta[MESH_META] = mesh
    payload: dict[str, Any] = {
        "ID": definition["id"],
        "Name": definition["name"],
        "Address": definition.get("address") or "",
        "Port": definition["port"],
        "Tags": sorted(set(definition.get("tags") or [])),
        "Meta": dict(sorted(meta.items())),
        "EnableTagOverride": False,
        "Checks": sorted(
            (_check_payload(check) for check in definition.get("checks") or []), key=lambda c: c["CheckID"]
        ),
    }
    payload["Meta"][DIGEST_META] = definition_digest(payload)
    payload["Meta"] = dict(sorted(payload["Meta"].items()))
    return payload


def wanted_payloads(definitions: Iterable[Mapping[str, Any]], mesh: str) -> dict[str, dict[str, Any]]:
    """Payloads by service ID; every definition is checked first, duplicate IDs refused."""
    payloads: dict[str, dict[str, Any]] = {}
    for index, raw in enumerate(definitions):
        definition = raw.get("service", raw) if isinstance(raw, Mapping) else raw
        _validate(definition, index, mesh)
        if definition["id"] in payloads:
            raise ConsulDefinitionError(
                f"{_where(index, 'id')}: {definition['id']!r} is registered twice; give every instance its own id"
            )
        payloads[definition["id"]] = api_payload(definition, mesh)
    return payloads


# ----------------------------------------------------------------------------------------------------------------
# One shape for both sides
# ----------------------------------------------------------------------------------------------------------------


def _check_view(check_id: str, name: str, kind: str, interval: Any, timeout: Any) -> dict[str, Any]:
    return {
        "id": check_id,
        "name": name,
        "type": kind,
        "interval_ms": duration_ms(interval),
        "timeout_ms": duration_ms(timeout),
    }


def normalise_wanted(payload: Mapping[str, Any]) -> dict[str, Any]:
    """The comparable view of a wanted payload."""
    checks = []
    for check in payload.get("Checks", []):
        kind = "http" if "HTTP" in check else "grpc" if "GRPC" in check else "tcp"
        checks.append(_check_view(check["CheckID"], check["Name"], kind, check.get("Interval"), check.get("Timeout")))
    return {
        "id": payload["ID"],
        "name": payload["Name"],
        "address": payload.get("Address") or "",
        "port": payload["Port"],
        "tags": sorted(payload.get("Tags") or []),
        "meta": dict(sorted((payload.get("Meta") or {}).items())),
        "checks": sorted(checks, key=lambda c: c["id"]),
    }


def normalise_agent(service: Mapping[str, Any], checks: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """The comparable view of what the agent returns for one service and the checks bound to it."""
    views = [
        _check_view(
            check.get("CheckID", ""),
            check.get("Name", ""),
            (check.get("Type") or "").lower(),
            check.get("Interval") or None,
            check.get("Timeout") or None,
        )
        for check in checks
        if check.get("ServiceID") == service.get("ID")
    ]
    return {
        "id": service.get("ID", ""),
        "name": service.get("Service", ""),
        "address": service.get("Address") or "",
        "port": service.get("Port", 0),
        "tags": sorted(service.get("Tags") or []),
        "meta": dict(sorted((service.get("Meta") or {}).items())),
        "checks": sorted(views, key=lambda c: c["id"]),
    }


# ----------------------------------------------------------------------------------------------------------------
# Changes
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class Changes:
    """What keeping the registrations takes: IDs to register (new or changed) and to deregister."""

    register: list[str] = field(default_factory=list)
    deregister: list[str] = field(default_factory=list)
    before: dict[str, dict[str, Any]] = field(default_factory=dict)
    after: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def changed(self) -> bool:
        return bool(self.register or self.deregister)


def owned_services(
    agent_services: Mapping[str, Mapping[str, Any]], agent_checks: Mapping[str, Mapping[str, Any]], mesh: str
) -> dict[str, dict[str, Any]]:
    """Normalised views, by ID, of the agent's services whose meta ``vmmesh_mesh`` is ``mesh``."""
    checks = list(agent_checks.values())
    return {
        service_id: normalise_agent(service, checks)
        for service_id, service in sorted(agent_services.items())
        if (service.get("Meta") or {}).get(MESH_META) == mesh
    }


def plan_changes(
    wanted: Mapping[str, Mapping[str, Any]], current: Mapping[str, Mapping[str, Any]], purge: bool = True
) -> Changes:
    """Compare wanted payloads (by ID) with the owned registrations' views (by ID)."""
    changes = Changes(before=dict(current))
    for service_id, payload in sorted(wanted.items()):
        view = normalise_wanted(payload)
        changes.after[service_id] = view
        if current.get(service_id) != view:
            changes.register.append(service_id)
    for service_id in sorted(current):
        if service_id in wanted:
            continue
        if purge:
            changes.deregister.append(service_id)
        else:
            changes.after[service_id] = dict(current[service_id])
    return changes


def diff_text(views: Mapping[str, Mapping[str, Any]]) -> str:
    """Registrations as sorted JSON, one per ID, for Ansible's diff."""
    return json.dumps(dict(sorted(views.items())), indent=2, sort_keys=True) + "\n"


# ----------------------------------------------------------------------------------------------------------------
# The agent
# ----------------------------------------------------------------------------------------------------------------

Request = Callable[[str, str, Any, str], tuple[int, Any]]
"""``request(method, path, body, token) -> (status, decoded JSON or text)``."""


class AgentClient:
    """The few calls of the agent's HTTP API the module needs."""

    def __init__(self, request: Request, token: str) -> None:
        self._request = request
        self._token = token

    def _call(self, method: str, path: str, body: Any = None, token: str | None = None) -> Any:
        status, answer = self._request(method, path, body, self._token if token is None else token)
        if status != 200:
            hint = ""
            if status == 403:
                hint = " (the token lacks the ACL rights: service:write on the service, service:read to list)"
            raise ConsulAgentError(f"{method} {path}: HTTP {status}{hint}: {str(answer).strip()[:300]}")
        return answer

    def services(self) -> dict[str, dict[str, Any]]:
        return self._call("GET", "/v1/agent/services") or {}

    def checks(self) -> dict[str, dict[str, Any]]:
        return self._call("GET", "/v1/agent/checks") or {}

    def register(self, payload: Mapping[str, Any], token: str | None = None) -> None:
        """Register (or replace) a service and its checks; the agent keeps ``token`` for syncing it."""
        self._call("PUT", "/v1/agent/service/register?replace-existing-checks=true", dict(payload), token)

    def deregister(self, service_id: str) -> None:
        self._call("PUT", f"/v1/agent/service/deregister/{service_id}")


def apply_changes(
    client: AgentClient,
    changes: Changes,
    wanted: Mapping[str, Mapping[str, Any]],
    tokens: Mapping[str, str] | None = None,
) -> None:
    """Register what changed, each with its service name's token when one is given, then deregister the rest."""
    tokens = tokens or {}
    for service_id in changes.register:
        payload = wanted[service_id]
        client.register(payload, tokens.get(payload["Name"]) or None)
    for service_id in changes.deregister:
        client.deregister(service_id)
