# Copyright (c) vmmesh.mesh contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The leaf certificates one host needs: one per mesh service instance on it, plus its Consul agent's.

This is the door of the ``vmmesh.mesh.certificates`` role into the plan: it reads the plan document
(``mesh | vmmesh.mesh.mesh_plan(groups, hostvars)``) or the role's explicit ``certificates_services``, checks that
explicit identities agree with the plan, and returns what each certificate must hold and where its files go.
Error messages name the role variables, because that is where users fix them. Documentation: ``cert_leaves.yml``.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from ansible.errors import AnsibleFilterError

_SERVICE_NAME = re.compile(r"^[a-z0-9]([a-z0-9_-]{0,61}[a-z0-9])?$")
_SPIFFE_ID = re.compile(r"^spiffe://[a-z0-9._-]+(/[A-Za-z0-9._-]+)+$")
_DNS_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_DNS_NAME = re.compile(rf"^(\*\.)?({_DNS_LABEL}\.)*{_DNS_LABEL}$")
_SERVICE_KEYS = ("name", "identity", "dns_names", "ip_addresses", "common_name", "sidecar", "owner", "group")
_SIDECARS = ("envoy", "haproxy", "none")
_CONSUL_ROLES = ("none", "server", "client")
_CONSUL_DIRECTORY = "consul"


@dataclass
class Leaf:
    """One leaf certificate and the files that hold it on the host."""

    name: str
    kind: str  # envoy, haproxy, consul or other: who uses the files (and which handler topic fires)
    directory: str
    common_name: str
    identity: str
    dns_names: list[str] = field(default_factory=list)
    ip_addresses: list[str] = field(default_factory=list)
    owner: str = "root"
    group: str = "root"
    combined_pem: bool = False


@dataclass
class _Context:
    host: str
    plan: Mapping[str, Any]
    directory: str
    owner: str
    group: str
    sidecar_owners: Mapping[str, Any]
    errors: list[str] = field(default_factory=list)

    def fail(self, message: str) -> None:
        self.errors.append(message)


# ---------------------------------------------------------------------------------------------------------------------
# Owners
# ---------------------------------------------------------------------------------------------------------------------


def _owner_of(context: _Context, kind: str, entry: Mapping[str, Any], path: str) -> tuple[str, str]:
    by_sidecar = context.sidecar_owners.get(kind, {}) if kind in ("envoy", "haproxy") else {}
    owner = entry["owner"] if "owner" in entry else by_sidecar.get("owner", context.owner)
    group = entry["group"] if "group" in entry else by_sidecar.get("group", context.group)
    for key, value in (("owner", owner), ("group", group)):
        if not isinstance(value, str) or not value.strip():
            context.fail(f"{path}.{key}: {value!r} is not a user or group name; give a name such as 'root'")
    return str(owner), str(group)


def _check_sidecar_owners(context: _Context) -> None:
    if not isinstance(context.sidecar_owners, Mapping):
        context.fail(
            f"certificates_sidecar_owners: {context.sidecar_owners!r} is not a mapping; "
            "write {envoy: {owner: envoy, group: envoy}}"
        )
        context.sidecar_owners = {}
        return
    for kind, value in sorted(context.sidecar_owners.items()):
        if kind not in ("envoy", "haproxy") or not isinstance(value, Mapping) or set(value) - {"owner", "group"}:
            context.fail(
                f"certificates_sidecar_owners.{kind}: {value!r}; keys are the sidecars envoy and haproxy, "
                "each mapping to {owner: USER, group: GROUP}"
            )
    context.sidecar_owners = {
        kind: value
        for kind, value in context.sidecar_owners.items()
        if kind in ("envoy", "haproxy") and isinstance(value, Mapping)
    }


# ---------------------------------------------------------------------------------------------------------------------
# Mesh services
# ---------------------------------------------------------------------------------------------------------------------


def _plan_services_on_host(plan: Mapping[str, Any], host: str) -> dict[str, tuple[Mapping[str, Any], str]]:
    """Service name to (service, sidecar of its instance on ``host``), for services with an instance there."""
    found: dict[str, tuple[Mapping[str, Any], str]] = {}
    for name, service in (plan.get("services") or {}).items():
        for instance in service.get("instances") or []:
            if instance.get("host") == host:
                found[name] = (service, str(instance.get("sidecar") or service.get("sidecar") or "none"))
                break
    return found


def _hosts_of(service: Mapping[str, Any]) -> str:
    return ", ".join(sorted({str(item.get("host")) for item in service.get("instances") or []})) or "none"


def _leaf_from_plan(context: _Context, name: str, service: Mapping[str, Any], sidecar: str) -> Leaf:
    kind = sidecar if sidecar in ("envoy", "haproxy") else "other"
    owner, group = _owner_of(context, kind, {}, f"the plan's service {name!r}")
    dns_name = service.get("dns_name")
    return Leaf(
        name=name,
        kind=kind,
        directory=f"{context.directory}/{name}",
        common_name=name,
        identity=str(service.get("identity") or ""),
        dns_names=[str(dns_name)] if dns_name else [],
        owner=owner,
        group=group,
        combined_pem=kind == "haproxy",
    )


def _string_list(context: _Context, value: Any, path: str, check: Callable[[str], bool], example: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str) or not isinstance(value, list):
        context.fail(f"{path}: {value!r} is not a list; write a list such as [{example!r}]")
        return []
    for item in value:
        if not isinstance(item, str) or not check(item):
            context.fail(f"{path}: {item!r} is not valid; write entries such as {example!r}")
    return sorted({item for item in value if isinstance(item, str)})


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _explicit_leaf(
    context: _Context, index: int, entry: Any, planned: Mapping[str, tuple[Mapping[str, Any], str]]
) -> Leaf | None:
    path = f"certificates_services[{index}]"
    if not isinstance(entry, Mapping):
        context.fail(f"{path}: {entry!r} is not a mapping; write {{name: web, identity: spiffe://...}}")
        return None
    unknown = sorted(set(entry) - set(_SERVICE_KEYS))
    if unknown:
        context.fail(f"{path}: unknown keys {unknown}; the keys are {', '.join(_SERVICE_KEYS)}")
    name = entry.get("name")
    if not isinstance(name, str) or not _SERVICE_NAME.match(name):
        context.fail(f"{path}.name: {name!r} is not a service name; use lowercase letters, digits, '-' and '_'")
        return None
    services = context.plan.get("services") or {}
    plan_service, plan_sidecar = planned.get(name, ({}, ""))
    if context.plan and name not in services:
        known = ", ".join(sorted(services)) or "none"
        context.fail(
            f"{path}.name: service {name!r} is not in the plan (mesh.services has: {known}); "
            "add it to mesh.services or remove it from certificates_services"
        )
    elif context.plan and name not in planned:
        context.fail(
            f"{path}.name: the plan places service {name!r} on {_hosts_of(services[name])}, not on {context.host}; "
            "fix the service's hosts in mesh.services or remove it from this host's certificates_services"
        )
    identity = entry.get("identity", plan_service.get("identity"))
    if identity is None:
        context.fail(
            f"{path}.identity: missing; without `mesh` give the SPIFFE ID, e.g. spiffe://shop.mesh/ns/default/dc/dc1/svc/{name}"
        )
        identity = ""
    elif not isinstance(identity, str) or not _SPIFFE_ID.match(identity):
        context.fail(
            f"{path}.identity: {identity!r} is not a SPIFFE ID such as 'spiffe://shop.mesh/ns/default/dc/dc1/svc/{name}'"
        )
    elif plan_service and identity != plan_service.get("identity"):
        context.fail(
            f"{path}.identity: {identity!r} does not match the plan's identity {plan_service.get('identity')!r} "
            f"of service {name!r}; remove the identity key to take it from the plan, or change mesh.trust_domain "
            "or mesh.datacenter if the plan is what is wrong"
        )
    sidecar = entry.get("sidecar", plan_sidecar or "none")
    if sidecar not in _SIDECARS:
        context.fail(f"{path}.sidecar: {sidecar!r}; use one of {', '.join(_SIDECARS)}")
        sidecar = "none"
    kind = sidecar if sidecar in ("envoy", "haproxy") else "other"
    default_dns = [plan_service["dns_name"]] if plan_service.get("dns_name") else None
    common_name = entry.get("common_name", name)
    if not isinstance(common_name, str) or not common_name or len(common_name) > 64:
        context.fail(f"{path}.common_name: {common_name!r}; give 1 to 64 characters (HAProxy authorizes by this name)")
        common_name = name
    owner, group = _owner_of(context, kind, entry, path)
    return Leaf(
        name=name,
        kind=kind,
        directory=f"{context.directory}/{name}",
        common_name=common_name,
        identity=str(identity),
        dns_names=_string_list(
            context,
            entry.get("dns_names", default_dns),
            f"{path}.dns_names",
            _DNS_NAME.match,
            f"{name}.service.dc1.consul",
        ),
        ip_addresses=_string_list(context, entry.get("ip_addresses"), f"{path}.ip_addresses", _is_ip, "10.0.0.5"),
        owner=owner,
        group=group,
        combined_pem=kind == "haproxy",
    )


def _service_leaves(context: _Context, services: Any) -> list[Leaf]:
    planned = _plan_services_on_host(context.plan, context.host)
    if services is None or services == []:
        return [_leaf_from_plan(context, name, *planned[name]) for name in sorted(planned)]
    if not isinstance(services, list):
        context.fail(f"certificates_services: {services!r} is not a list of services; write [{{name: web}}]")
        return []
    leaves = [_explicit_leaf(context, index, entry, planned) for index, entry in enumerate(services)]
    seen: set[str] = set()
    for leaf in leaves:
        if leaf is not None and leaf.name in seen:
            context.fail(f"certificates_services: service {leaf.name!r} is listed twice; keep one entry")
        if leaf is not None:
            seen.add(leaf.name)
    return [leaf for leaf in leaves if leaf is not None]


# ---------------------------------------------------------------------------------------------------------------------
# Consul agents
# ---------------------------------------------------------------------------------------------------------------------


def _split_name(text: str) -> tuple[str, str]:
    """``DNS:x`` -> (DNS, x); ``IP:x`` -> (IP, x); a bare name -> ("", name)."""
    for prefix in ("DNS", "IP"):
        if text.startswith(prefix + ":"):
            return prefix, text[len(prefix) + 1 :]
    return "", text


def _consul_names(context: _Context, extra: Any) -> tuple[list[str], list[str]]:
    """Split ``certificates_consul_extra_names`` (``DNS:name``, ``IP:address`` or bare) into DNS names and IPs."""
    dns: list[str] = []
    ips: list[str] = []
    if not isinstance(extra, list):
        context.fail(
            f"certificates_consul_extra_names: {extra!r} is not a list; "
            "write ['DNS:consul1.example.net', 'IP:10.0.0.5']"
        )
        return dns, ips
    for item in extra:
        text = str(item)
        kind, value = _split_name(text)
        if kind in ("", "IP") and _is_ip(value):
            ips.append(str(ipaddress.ip_address(value)))
        elif kind in ("", "DNS") and _DNS_NAME.match(value):
            dns.append(value)
        else:
            context.fail(f"certificates_consul_extra_names: {text!r} is not valid; write 'DNS:name' or 'IP:address'")
    return dns, ips


def _consul_leaf(context: _Context, consul: Mapping[str, Any]) -> Leaf | None:
    role = consul.get("role", "none")
    if role not in _CONSUL_ROLES:
        context.fail(f"certificates_consul_role: {role!r}; use server, client or none")
        return None
    if role == "none":
        return None
    mesh = context.plan.get("mesh") or {}
    datacenter = consul.get("datacenter") or mesh.get("datacenter") or "dc1"
    domain = consul.get("domain") or mesh.get("consul_domain") or "consul"
    for key, value in (("datacenter", datacenter), ("domain", domain)):
        if not isinstance(value, str) or not _DNS_NAME.match(value):
            context.fail(f"certificates_consul_{key}: {value!r} is not a DNS label; write e.g. 'dc1' or 'consul'")
    agent_name = f"{role}.{datacenter}.{domain}"
    extra_dns, extra_ips = _consul_names(context, consul.get("extra_names") or [])
    owner, group = str(consul.get("owner") or "root"), str(consul.get("group") or "root")
    return Leaf(
        name=_CONSUL_DIRECTORY,
        kind="consul",
        directory=f"{context.directory}/{_CONSUL_DIRECTORY}",
        common_name=agent_name,
        identity="",
        dns_names=sorted({agent_name, "localhost", *extra_dns}),
        ip_addresses=sorted({"127.0.0.1", *extra_ips}),
        owner=owner,
        group=group,
        combined_pem=False,
    )


# ---------------------------------------------------------------------------------------------------------------------
# The filter
# ---------------------------------------------------------------------------------------------------------------------


def cert_leaves(
    plan: Any,
    host: str,
    services: Any = None,
    directory: str = "/etc/vmmesh/certs",
    owner: str = "root",
    group: str = "root",
    sidecar_owners: Any = None,
    consul: Any = None,
) -> list[dict[str, Any]]:
    """The leaf certificates of ``host``, sorted by name."""
    if plan is None or plan == "":
        plan = {}
    if not isinstance(plan, Mapping):
        raise AnsibleFilterError("cert_leaves: pass the plan, mesh | vmmesh.mesh.mesh_plan(groups, hostvars), or {}")
    if not isinstance(host, str) or not host:
        raise AnsibleFilterError(f"cert_leaves: host must be an inventory host name, not {host!r}")
    if not isinstance(directory, str) or not directory.startswith("/"):
        raise AnsibleFilterError(f"cert_leaves: certificates_dir {directory!r} must be an absolute path")
    context = _Context(host, plan, directory.rstrip("/") or "/", owner, group, sidecar_owners or {})
    _check_sidecar_owners(context)
    leaves = _service_leaves(context, services)
    consul_leaf = _consul_leaf(context, consul if isinstance(consul, Mapping) else {"role": "none"})
    if consul_leaf is not None:
        if any(leaf.name == _CONSUL_DIRECTORY for leaf in leaves):
            context.fail(
                f"a mesh service named {_CONSUL_DIRECTORY!r} would share {consul_leaf.directory} with the "
                "Consul agent's certificate; rename the service or set certificates_consul_role: none"
            )
        leaves.append(consul_leaf)
    if context.errors:
        problems = "\n".join(f"  - {message}" for message in context.errors)
        raise AnsibleFilterError(
            f"cert_leaves: host {host}: {len(context.errors)} problem(s) with the certificates to issue:\n{problems}"
        )
    return [asdict(leaf) for leaf in sorted(leaves, key=lambda leaf: leaf.name)]


class FilterModule:
    """Filters of the mesh identity (certificates)."""

    def filters(self) -> dict[str, Callable]:
        return {"cert_leaves": cert_leaves}
