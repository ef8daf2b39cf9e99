# Copyright (c) vmmesh.mesh contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The planner: from a validated :class:`MeshModel` to what every host runs.

:func:`plan_mesh` parses the ``mesh`` variable, then derives the authorization of each service from the intentions,
checks every upstream against it, gives every port a number (and reports every collision), and returns a
:class:`MeshPlan`. Every error of every stage is collected and raised together as one ``MeshValidationError``.

Ports (see docs/planner.md):

* the inbound mTLS port of a service is the same on every instance, so that DNS discovery (A records plus a known
  port) works. It starts at ``range.start + sha256(service) % range.size`` and probes upwards (wrapping) to the first
  port free on every host of the service; services are placed in name order. A service only moves when a service
  that shares one of its hosts lands on the same slot, never because an unrelated service came or went.
* admin and metrics ports are per host: per Envoy instance, by the same hash-and-probe on that host; one pair per host
  for the host's HAProxy.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple

from ansible_collections.vmmesh.mesh.plugins.module_utils.mesh_errors import (
    DeniedUpstreamError,
    ErrorCollector,
    InvalidValueError,
    MeshValidationError,
    PortCollisionError,
    PortRangeExhaustedError,
    key_path,
)
from ansible_collections.vmmesh.mesh.plugins.module_utils.mesh_model import (
    WILDCARD,
    HealthCheck,
    Intention,
    MeshModel,
    PortRange,
    RateLimit,
    Service,
    TrafficPolicy,
    Upstream,
    parse_mesh,
)

LOCALHOST = "127.0.0.1"
HAPROXY_PORT_KEY = "_haproxy"


class Endpoint(NamedTuple):
    host: str
    address: str
    port: int


@dataclass(frozen=True)
class UpstreamTarget:
    """One cluster (Envoy) or backend (HAProxy) of an upstream: the whole service or one subset of it."""

    name: str
    subset: str | None
    weight: int
    dns_name: str
    endpoints: tuple[Endpoint, ...]


@dataclass(frozen=True)
class UpstreamPlan:
    service: str
    local_port: int
    protocol: str
    identity: str
    sni: str
    port: int
    policy: TrafficPolicy
    health_check: HealthCheck
    targets: tuple[UpstreamTarget, ...]
    allowed: bool


class AuthorizationRule(NamedTuple):
    source: str
    identity: str
    action: str
    paths: tuple[str, ...] = ()
    methods: tuple[str, ...] = ()

    @property
    def is_l7(self) -> bool:
        return bool(self.paths or self.methods)


@dataclass(frozen=True)
class Authorization:
    """Who may call a service: rules per source identity (first match), then ``default_action``."""

    default_action: str
    rules: tuple[AuthorizationRule, ...]
    by_source: Mapping[str, AuthorizationRule] = field(default_factory=dict, compare=False, repr=False)

    def decision(self, source: str) -> str:
        rule = self.by_source.get(source)
        return rule.action if rule is not None else self.default_action


@dataclass(frozen=True)
class CertPaths:
    directory: str
    cert: str
    key: str
    trust_bundle: str
    haproxy_pem: str


@dataclass(frozen=True)
class InstancePlan:
    service: str
    host: str
    address: str
    sidecar: str
    inbound_port: int
    admin_port: int
    metrics_port: int
    metrics_address: str
    subsets: tuple[str, ...]


@dataclass(frozen=True)
class TracingPlan:
    """The tracing of one service's sidecar: the share of new requests that start a trace, and where spans go."""

    sampling: float
    backend_address: str
    backend_port: int
    backend_path: str
    service_name: str
    identity: str


@dataclass(frozen=True)
class ServicePlan:
    name: str
    identity: str
    dns_name: str
    protocol: str
    sidecar: str
    inbound_port: int
    app_address: str
    app_port: int
    health_check: HealthCheck
    rate_limit: RateLimit | None
    tags: tuple[str, ...]
    meta: tuple[tuple[str, str], ...]
    certs: CertPaths
    authorization: Authorization
    upstreams: tuple[UpstreamPlan, ...]
    instances: tuple[InstancePlan, ...]
    tracing: TracingPlan | None = None


class Listener(NamedTuple):
    kind: str
    address: str
    port: int
    service: str | None
    upstream: str | None = None


@dataclass(frozen=True)
class HaproxyPlan:
    admin_port: int
    metrics_port: int
    metrics_address: str
    services: tuple[str, ...]


@dataclass(frozen=True)
class HostPlan:
    name: str
    address: str
    instances: tuple[InstancePlan, ...]
    haproxy: HaproxyPlan | None


class Edge(NamedTuple):
    source: str
    destination: str
    local_port: int
    allowed: bool


@dataclass(frozen=True)
class MeshPlan:
    model: MeshModel
    services: dict[str, ServicePlan]
    hosts: dict[str, HostPlan]
    edges: tuple[Edge, ...]
    warnings: tuple[str, ...]


def identity_of(model: MeshModel, service: str) -> str:
    return f"spiffe://{model.trust_domain}/ns/default/dc/{model.datacenter}/svc/{service}"


def dns_name_of(model: MeshModel, service: str, subset: str | None = None) -> str:
    name = f"{service}.service.{model.datacenter}.{model.consul.domain}"
    return f"{subset}.{name}" if subset else name


def tracing_of(model: MeshModel, service: Service) -> TracingPlan | None:
    """The service's tracing (its override over ``mesh.tracing``), or ``None`` when it does not trace."""
    mesh = model.tracing
    enabled = service.tracing.enabled if service.tracing.enabled is not None else mesh.enabled
    if not enabled or mesh.backend is None:
        return None
    return TracingPlan(
        sampling=service.tracing.sampling if service.tracing.sampling is not None else mesh.sampling,
        backend_address=mesh.backend.address,
        backend_port=mesh.backend.port,
        backend_path=mesh.backend.path,
        service_name=service.name,
        identity=identity_of(model, service.name),
    )


def host_port(address: str, port: int) -> str:
    """``address:port``, with an IPv6 address in brackets."""
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def stable_hash(text: str) -> int:
    """A hash that is the same in every process and on every machine (unlike ``hash()``)."""
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big")


# --------------------------------------------------------------------------------------------------------------------
# Authorization from intentions
# --------------------------------------------------------------------------------------------------------------------


def authorizations(model: MeshModel) -> dict[str, Authorization]:
    """Authorization of every service. Precedence as in Consul: ``S->D``, then ``*->D``, then ``S->*``, then
    ``*->*``, then ``mesh.default_policy``."""
    exact: dict[str, dict[str, Intention]] = {}
    any_source: dict[str, Intention] = {}
    any_destination: dict[str, Intention] = {}
    everything: Intention | None = None
    for intention in model.intentions:
        if intention.source == WILDCARD and intention.destination == WILDCARD:
            everything = intention
        elif intention.source == WILDCARD:
            any_source[intention.destination] = intention
        elif intention.destination == WILDCARD:
            any_destination[intention.source] = intention
        else:
            exact.setdefault(intention.destination, {})[intention.source] = intention
    result = {}
    for name in model.services:
        if name in any_source:
            default = any_source[name].action
            matching = dict(exact.get(name, {}))
        else:
            default = everything.action if everything is not None else model.default_policy
            matching = dict(any_destination)
            matching.update(exact.get(name, {}))
        rules = tuple(
            AuthorizationRule(
                source=source,
                identity=identity_of(model, source),
                action=intention.action,
                paths=intention.paths,
                methods=intention.methods,
            )
            for source, intention in sorted(matching.items())
            if intention.action != default or intention.is_l7
        )
        result[name] = Authorization(
            default_action=default, rules=rules, by_source={rule.source: rule for rule in rules}
        )
    return result


# --------------------------------------------------------------------------------------------------------------------
# Ports
# --------------------------------------------------------------------------------------------------------------------


class _PortOwner(NamedTuple):
    """Who holds a port: the key path that set or needed it, and what the port is for."""

    path: str
    what: str

    def describe(self) -> str:
        return f"{self.path} ({self.what})" if self.path.endswith("port") else self.what


class _HostPorts:
    """Every port number taken on every host, with its owner for collision messages."""

    def __init__(self, errors: ErrorCollector) -> None:
        self.errors = errors
        self.used: dict[str, dict[int, _PortOwner]] = {}
        self._collisions: dict[tuple[_PortOwner, int, _PortOwner], list[str]] = {}

    def claim(self, host: str, port: int, owner: _PortOwner) -> None:
        ports = self.used.setdefault(host, {})
        if port in ports:
            self._collisions.setdefault((owner, port, ports[port]), []).append(host)
            return
        ports[port] = owner

    def report_collisions(self) -> None:
        """One error per colliding pair of owners, naming every host where they collide."""
        for (owner, port, holder), hosts in self._collisions.items():
            where = "host " + repr(hosts[0]) if len(hosts) == 1 else "hosts " + ", ".join(map(repr, hosts))
            self.errors.add(
                PortCollisionError(
                    owner.path,
                    port,
                    f"port {port} on {where} is already used by {holder.describe()}",
                    "choose a port that is free on every host of the service",
                )
            )
        self._collisions.clear()

    def allocate(self, hosts: tuple[str, ...], key: str, port_range: PortRange, owner: _PortOwner) -> int | None:
        """Claim the first port of ``port_range``, probing up from ``hash(key)``, that is free on all ``hosts``."""
        used = [self.used.setdefault(host, {}) for host in hosts]
        start = stable_hash(key) % port_range.size
        for step in range(port_range.size):
            port = port_range.start + (start + step) % port_range.size
            if not any(port in ports for ports in used):
                for ports in used:
                    ports[port] = owner
                return port
        self.errors.add(
            PortRangeExhaustedError(
                owner.path,
                f"{port_range.start}-{port_range.end}",
                f"no port of range {port_range.start}-{port_range.end} is free on {', '.join(hosts)} "
                f"for the {owner.what}",
                "widen the range or spread the services over more hosts",
            )
        )
        return None


def _claim_fixed_ports(model: MeshModel, ports: _HostPorts) -> None:
    for name, service in model.services.items():
        owners = [(service.port, _PortOwner(key_path(service.path, "port"), f"application port of {name}"))]
        owners.extend(
            (
                upstream.local_port,
                _PortOwner(
                    key_path(upstream.path, "local_port"), f"local port of {name}'s upstream {upstream.service}"
                ),
            )
            for upstream in service.upstreams
        )
        if service.inbound_port is not None:
            owners.append(
                (service.inbound_port, _PortOwner(key_path(service.path, "inbound_port"), f"inbound port of {name}"))
            )
        for host in service.hosts:
            for port, owner in owners:
                ports.claim(host, port, owner)
    ports.report_collisions()


def _inbound_ports(model: MeshModel, ports: _HostPorts) -> dict[str, int]:
    result: dict[str, int] = {}
    for name, service in model.services.items():
        if service.inbound_port is not None:
            result[name] = service.inbound_port
        elif service.hosts:
            owner = _PortOwner(key_path(service.path, "inbound_port"), f"inbound port of {name}")
            port = ports.allocate(service.hosts, name, model.ports.inbound, owner)
            result[name] = port if port is not None else 0
    return result


@dataclass(frozen=True)
class _SidecarPorts:
    admin: dict[tuple[str, str], int]
    metrics: dict[tuple[str, str], int]


def _sidecar_ports(model: MeshModel, ports: _HostPorts, host_services: dict[str, list[Service]]) -> _SidecarPorts:
    """Admin and metrics ports, keyed by ``(host, service)`` for Envoy and ``(host, '_haproxy')`` for HAProxy."""
    admin: dict[tuple[str, str], int] = {}
    metrics: dict[tuple[str, str], int] = {}
    for host in sorted(host_services):
        owners = [service.name for service in host_services[host] if service.sidecar == "envoy"]
        if any(service.sidecar == "haproxy" for service in host_services[host]):
            owners.append(HAPROXY_PORT_KEY)
        for owner in owners:
            label = "haproxy sidecar" if owner == HAPROXY_PORT_KEY else "envoy sidecar of " + owner
            admin_owner = _PortOwner("mesh.ports.admin", "admin port of the " + label)
            metrics_owner = _PortOwner("mesh.ports.metrics", "metrics port of the " + label)
            admin[(host, owner)] = ports.allocate((host,), owner, model.ports.admin, admin_owner) or 0
            metrics[(host, owner)] = ports.allocate((host,), owner, model.ports.metrics, metrics_owner) or 0
    return _SidecarPorts(admin, metrics)


# --------------------------------------------------------------------------------------------------------------------
# The plan
# --------------------------------------------------------------------------------------------------------------------


def plan_mesh(mesh: Any, groups: Mapping[str, Any] | None, hostvars: Mapping[str, Any] | None) -> MeshPlan:
    """Validate ``mesh`` against the inventory and plan every host; raises ``MeshValidationError`` with all errors."""
    errors = ErrorCollector()
    model = parse_mesh(mesh, groups, hostvars, errors)
    if model is None:
        raise MeshValidationError(errors.errors)
    return _Planner(model, errors).plan()


class _Planner:
    def __init__(self, model: MeshModel, errors: ErrorCollector) -> None:
        self.model = model
        self.errors = errors
        self.host_services: dict[str, list[Service]] = {}
        for service in model.services.values():
            for host in service.hosts:
                self.host_services.setdefault(host, []).append(service)

    def plan(self) -> MeshPlan:
        model = self.model
        auth = authorizations(model)
        edges = self._edges(auth)
        ports = _HostPorts(self.errors)
        _claim_fixed_ports(model, ports)
        inbound = _inbound_ports(model, ports)
        sidecar_ports = _sidecar_ports(model, ports, self.host_services)
        self.errors.raise_if_any()
        instances = self._instances(inbound, sidecar_ports)
        self._check_drained(instances)
        allowed = {(edge.source, edge.destination): edge.allowed for edge in edges}
        services = {}
        target_cache: dict[str, tuple[UpstreamTarget, ...]] = {}
        for name, service in model.services.items():
            upstreams = tuple(
                self._upstream(service, upstream, inbound, instances, target_cache, allowed[(name, upstream.service)])
                for upstream in service.upstreams
            )
            services[name] = self._service_plan(service, inbound[name], auth[name], upstreams, instances[name])
        # Ports stay allocated for drained hosts: nothing else moves when one leaves or returns.
        hosts = {
            host: self._host_plan(host, services, sidecar_ports)
            for host in sorted(self.host_services)
            if host not in model.drained_hosts
        }
        self.errors.raise_if_any()
        return MeshPlan(
            model=model,
            services=services,
            hosts=hosts,
            edges=tuple(edge for edge in edges if edge.allowed),
            warnings=tuple(self.errors.warnings),
        )

    def _edges(self, auth: dict[str, Authorization]) -> list[Edge]:
        edges = []
        for name, service in self.model.services.items():
            for upstream in service.upstreams:
                allowed = auth[upstream.service].decision(name) == "allow"
                if not allowed and self.model.intentions_valid:
                    # with a broken intention the verdict is unsure: its own error is reported instead
                    self._denied(name, upstream)
                edges.append(
                    Edge(source=name, destination=upstream.service, local_port=upstream.local_port, allowed=allowed)
                )
        return edges

    def _denied(self, source: str, upstream: Upstream) -> None:
        where = key_path(upstream.path, "service")
        intention = f"{{source: {source}, destination: {upstream.service}, action: allow}}"
        fix = f"add the intention {intention} or remove the upstream"
        if self.model.denied_upstream == "error":
            fix += " (or set mesh.denied_upstream: warning to deploy it anyway, refused by the destination)"
        error = DeniedUpstreamError(where, upstream.service, f"the intentions deny {source} -> {upstream.service}", fix)
        if self.model.denied_upstream == "error":
            self.errors.add(error)
        else:
            self.errors.warn(error.message)

    def _instances(self, inbound: dict[str, int], sidecar_ports: _SidecarPorts) -> dict[str, tuple[InstancePlan, ...]]:
        model = self.model
        result = {}
        for name, service in model.services.items():
            subsets_of: dict[str, list[str]] = {}
            for subset in service.subsets:
                for host in subset.hosts:
                    subsets_of.setdefault(host, []).append(subset.name)
            owner = name if service.sidecar == "envoy" else HAPROXY_PORT_KEY
            items = []
            for host in service.hosts:
                if host in model.drained_hosts:
                    continue
                address = model.host_addresses[host]
                items.append(
                    InstancePlan(
                        service=name,
                        host=host,
                        address=address,
                        sidecar=service.sidecar,
                        inbound_port=inbound[name],
                        admin_port=sidecar_ports.admin[(host, owner)],
                        metrics_port=sidecar_ports.metrics[(host, owner)],
                        metrics_address=address if model.metrics.expose else LOCALHOST,
                        subsets=tuple(sorted(subsets_of.get(host, ()))),
                    )
                )
            result[name] = tuple(items)
        return result

    def _check_drained(self, instances: dict[str, tuple[InstancePlan, ...]]) -> None:
        """A drain may not take a service's last instance away: its callers would have nowhere to go."""
        drained = self.model.drained_hosts
        for name, service in self.model.services.items():
            if instances[name] or not service.hosts:
                continue
            hosts = ", ".join(service.hosts)
            self.errors.add(
                InvalidValueError(
                    key_path(service.path, "hosts"),
                    sorted(drained & set(service.hosts)),
                    f"every host of {name} is drained ({hosts})",
                    "drain one of them at a time, or remove the service from the model to take it away",
                )
            )

    def _upstream(
        self,
        source: Service,
        upstream: Upstream,
        inbound: dict[str, int],
        instances: dict[str, tuple[InstancePlan, ...]],
        cache: dict[str, tuple[UpstreamTarget, ...]],
        allowed: bool,
    ) -> UpstreamPlan:
        model = self.model
        destination = model.services[upstream.service]
        port = inbound[destination.name]
        if upstream.split:
            subsets = {subset.name: set(subset.hosts) for subset in destination.subsets}
            targets = tuple(
                UpstreamTarget(
                    name=f"{destination.name}.{entry.subset}",
                    subset=entry.subset,
                    weight=entry.weight,
                    dns_name=dns_name_of(model, destination.name, entry.subset),
                    endpoints=tuple(
                        Endpoint(item.host, item.address, port)
                        for item in instances[destination.name]
                        if item.host in subsets[entry.subset]
                    ),
                )
                for entry in upstream.split
            )
            # A subset whose hosts are all drained gets no share: the others carry its weight.
            remaining = tuple(target for target in targets if target.endpoints)
            if not remaining and instances[destination.name]:
                self.errors.add(
                    InvalidValueError(
                        key_path(upstream.path, "split"),
                        [entry.subset for entry in upstream.split],
                        f"every host of the subsets of {destination.name} that {source.name} calls is drained",
                        "drain one subset's hosts at a time, or change the split",
                    )
                )
            if remaining and len(remaining) < len(targets):
                remaining = _rescaled(remaining)
            targets = remaining or targets
        else:
            targets = cache.get(destination.name, ())
            if not targets:
                targets = (
                    UpstreamTarget(
                        name=destination.name,
                        subset=None,
                        weight=100,
                        dns_name=dns_name_of(model, destination.name),
                        endpoints=tuple(
                            Endpoint(item.host, item.address, port) for item in instances[destination.name]
                        ),
                    ),
                )
                cache[destination.name] = targets
        return UpstreamPlan(
            service=destination.name,
            local_port=upstream.local_port,
            protocol=destination.protocol,
            identity=identity_of(model, destination.name),
            sni=dns_name_of(model, destination.name),
            port=port,
            policy=upstream.policy,
            health_check=destination.health_check,
            targets=targets,
            allowed=allowed,
        )

    def _service_plan(
        self,
        service: Service,
        inbound_port: int,
        authorization: Authorization,
        upstreams: tuple[UpstreamPlan, ...],
        instances: tuple[InstancePlan, ...],
    ) -> ServicePlan:
        model = self.model
        directory = f"{model.paths.certs}/{service.name}"
        return ServicePlan(
            name=service.name,
            identity=identity_of(model, service.name),
            dns_name=dns_name_of(model, service.name),
            protocol=service.protocol,
            sidecar=service.sidecar,
            inbound_port=inbound_port,
            app_address=service.app_address,
            app_port=service.port,
            health_check=service.health_check,
            rate_limit=service.rate_limit,
            tags=service.tags,
            meta=service.meta,
            certs=CertPaths(
                directory=directory,
                cert=directory + "/cert.pem",
                key=directory + "/key.pem",
                trust_bundle=directory + "/ca-bundle.pem",
                haproxy_pem=directory + "/haproxy.pem",
            ),
            authorization=authorization,
            upstreams=upstreams,
            instances=instances,
            tracing=tracing_of(model, service),
        )

    def _host_plan(self, host: str, services: dict[str, ServicePlan], sidecar_ports: _SidecarPorts) -> HostPlan:
        address = self.model.host_addresses[host]
        names = sorted(service.name for service in self.host_services[host])
        instances = tuple(instance for name in names for instance in services[name].instances if instance.host == host)
        haproxy_services = tuple(instance.service for instance in instances if instance.sidecar == "haproxy")
        haproxy = None
        if haproxy_services:
            key = (host, HAPROXY_PORT_KEY)
            haproxy = HaproxyPlan(
                admin_port=sidecar_ports.admin[key],
                metrics_port=sidecar_ports.metrics[key],
                metrics_address=address if self.model.metrics.expose else LOCALHOST,
                services=haproxy_services,
            )
        return HostPlan(name=host, address=address, instances=instances, haproxy=haproxy)


def _rescaled(targets: tuple[UpstreamTarget, ...]) -> tuple[UpstreamTarget, ...]:
    """The weights of what is left of a split, scaled to sum to 100 again (the last target takes the rounding)."""
    total = sum(target.weight for target in targets)
    if total == 0:
        return targets
    weights = [target.weight * 100 // total for target in targets]
    weights[-1] += 100 - sum(weights)
    return tuple(replace(target, weight=weight) for target, weight in zip(targets, weights, strict=True))


def rollout_order(plan: MeshPlan) -> list[str]:
    """The hosts in the order a rollout should take them: hosts of called services before their callers.

    A service's depth is 0 without upstreams, else one more than its deepest upstream (a cycle counts as 0); a
    host goes by the shallowest service it runs, then the deepest, then its name. A returning or new instance then
    serves before the callers that learn of it are changed.
    """
    model = plan.model
    depths: dict[str, int] = {}

    def depth(name: str, visiting: frozenset[str] = frozenset()) -> int:
        if name in visiting:
            return 0
        if name not in depths:
            upstreams = sorted(upstream.service for upstream in model.services[name].upstreams)
            depths[name] = 1 + max((depth(other, visiting | {name}) for other in upstreams), default=-1)
        return depths[name]

    for name in sorted(model.services):
        depth(name)

    def key(host: str) -> tuple[int, int, str]:
        service_depths = [depth(instance.service) for instance in plan.hosts[host].instances]
        return (min(service_depths, default=0), max(service_depths, default=0), host)

    return sorted(plan.hosts, key=key)


def host_listeners(plan: MeshPlan, host: str) -> list[Listener]:
    """Every listening socket on ``host``, sorted by port (computed on demand: big meshes have many)."""
    host_plan = plan.hosts[host]
    listeners: list[Listener] = []
    for instance in host_plan.instances:
        service = plan.services[instance.service]
        listeners.append(Listener("inbound", host_plan.address, instance.inbound_port, service.name))
        listeners.extend(
            Listener("outbound", LOCALHOST, upstream.local_port, service.name, upstream.service)
            for upstream in service.upstreams
        )
        if instance.sidecar == "envoy":
            listeners.append(Listener("admin", LOCALHOST, instance.admin_port, service.name))
            listeners.append(Listener("metrics", instance.metrics_address, instance.metrics_port, service.name))
    if host_plan.haproxy is not None:
        listeners.append(Listener("admin", LOCALHOST, host_plan.haproxy.admin_port, None))
        listeners.append(Listener("metrics", host_plan.haproxy.metrics_address, host_plan.haproxy.metrics_port, None))
    listeners.sort(key=lambda item: (item.port, item.kind, item.service or ""))
    return listeners
