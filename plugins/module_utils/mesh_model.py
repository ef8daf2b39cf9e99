# Copyright (c) vmmesh.mesh contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The ``mesh`` variable: parsing, defaults and validation.

:func:`parse_mesh` turns the raw variable (plus the inventory's ``groups`` and ``hostvars``) into a typed, fully
defaulted :class:`MeshModel`. It never stops at the first problem: every error is collected in an
:class:`~mesh_errors.ErrorCollector` and the parser carries on with a best-effort value, so that one run reports
everything. docs/model.md documents every key handled here.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from ansible_collections.vmmesh.mesh.plugins.module_utils.mesh_errors import (
    DuplicateError,
    EmptyGroupError,
    ErrorCollector,
    InvalidDurationError,
    InvalidTypeError,
    InvalidValueError,
    L7PolicyOnTcpError,
    MissingAddressError,
    MissingKeyError,
    OutOfRangeError,
    SplitWeightError,
    UnknownGroupError,
    UnknownHostError,
    UnknownKeyError,
    UnknownServiceError,
    UnknownSubsetError,
    UnsupportedBySidecarError,
    describe,
    did_you_mean,
    key_path,
)

PROTOCOLS = ("http", "http2", "grpc", "tcp")
SIDECARS = ("envoy", "haproxy")
DISCOVERIES = ("consul", "static")
POLICIES = ("deny", "allow")
DENIED_UPSTREAM_MODES = ("error", "warning")
HEALTH_CHECK_TYPES = ("http", "tcp", "grpc")
HTTP_METHODS = ("CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE")
WILDCARD = "*"

# Retry conditions: the ones every sidecar supports for L7 protocols, the one that is L4 (valid on tcp), and the gRPC
# status conditions that only Envoy implements.
RETRY_ON_L4 = ("connect-failure",)
RETRY_ON_HTTP = ("5xx", "connect-failure", "gateway-error", "reset")
RETRY_ON_GRPC = ("cancelled", "deadline-exceeded", "resource-exhausted", "unavailable")
RETRY_ON_ALL = tuple(sorted(set(RETRY_ON_HTTP + RETRY_ON_GRPC)))

_DNS_LABEL = re.compile(r"^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$")
_DNS_NAME = re.compile(r"^(?=.{1,253}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$")
_DURATION = re.compile(r"^(?:\d+(?:\.\d+)?(?:ms|s|m|h))+$")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_DURATION_UNIT_MS = {"ms": 1, "s": 1000, "m": 60000, "h": 3600000}
_META_KEY = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_TAG = re.compile(r"^[A-Za-z0-9_.:=/@+-]{1,128}$")
_ABS_PATH = re.compile(r"^/[A-Za-z0-9_./@+-]*$")
_HTTP_PATH = re.compile(r"^/[A-Za-z0-9_./~%!$&'()*+,;=:@-]*$")
_MAX_DURATION_MS = 24 * 3600 * 1000

_LABEL_FIX = "use a lowercase DNS label: letters, digits and '-', starting with a letter, at most 63 characters"


# --------------------------------------------------------------------------------------------------------------------
# The typed model
# --------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PortRange:
    start: int
    end: int

    @property
    def size(self) -> int:
        return self.end - self.start + 1

    def __contains__(self, port: object) -> bool:
        return isinstance(port, int) and self.start <= port <= self.end


@dataclass(frozen=True)
class PortRanges:
    inbound: PortRange = PortRange(21000, 24999)
    admin: PortRange = PortRange(19000, 19999)
    metrics: PortRange = PortRange(20000, 20999)


@dataclass(frozen=True)
class MetricsSettings:
    expose: bool = False
    path: str = "/metrics"


@dataclass(frozen=True)
class TracingBackend:
    """Where the sidecars send their spans: a Zipkin-compatible collector (``POST <path>``, JSON v2)."""

    address: str
    port: int = 9411
    host: str | None = None
    path: str = "/api/v2/spans"


@dataclass(frozen=True)
class TracingSettings:
    """``mesh.tracing``: the mesh-wide default; ``sampling`` is a percentage of the requests that start a trace."""

    enabled: bool = False
    sampling: float = 100.0
    backend: TracingBackend | None = None


@dataclass(frozen=True)
class ServiceTracing:
    """``mesh.services.<name>.tracing``: what the service overrides (``None``: the mesh-wide value)."""

    enabled: bool | None = None
    sampling: float | None = None


@dataclass(frozen=True)
class ConsulSettings:
    domain: str = "consul"
    dns_address: str = "127.0.0.1"
    dns_port: int = 8600


@dataclass(frozen=True)
class Paths:
    certs: str = "/etc/vmmesh/certs"
    envoy: str = "/etc/envoy"
    haproxy: str = "/etc/haproxy"
    consul: str = "/etc/consul.d"
    prometheus: str = "/etc/prometheus/file_sd"


@dataclass(frozen=True)
class Retries:
    attempts: int = 2
    retry_on: tuple[str, ...] = ("connect-failure", "reset")
    per_try_timeout_ms: int | None = None


@dataclass(frozen=True)
class CircuitBreaker:
    max_connections: int = 1024
    max_pending_requests: int = 1024
    max_requests: int = 1024
    max_retries: int = 3


@dataclass(frozen=True)
class OutlierDetection:
    enabled: bool = True
    consecutive_5xx: int = 5
    interval_ms: int = 10000
    base_ejection_time_ms: int = 30000
    max_ejection_percent: int = 10


@dataclass(frozen=True)
class TrafficPolicy:
    """What a client sidecar applies when it calls one upstream."""

    connect_timeout_ms: int = 5000
    request_timeout_ms: int = 15000
    retries: Retries = Retries()
    circuit_breaker: CircuitBreaker = CircuitBreaker()
    outlier_detection: OutlierDetection = OutlierDetection()


@dataclass(frozen=True)
class HealthCheck:
    type: str = "tcp"
    path: str | None = None
    interval_ms: int = 10000
    timeout_ms: int = 2000

    @property
    def http_path(self) -> str:
        """The path an HTTP check requests: the model's, or / when it names none."""
        return self.path or "/"


@dataclass(frozen=True)
class RateLimit:
    requests_per_second: int
    burst: int


@dataclass(frozen=True)
class SplitEntry:
    subset: str
    weight: int


@dataclass(frozen=True)
class Upstream:
    service: str
    local_port: int
    policy: TrafficPolicy
    split: tuple[SplitEntry, ...]
    path: str


@dataclass(frozen=True)
class Subset:
    name: str
    hosts: tuple[str, ...]


@dataclass(frozen=True)
class Service:
    name: str
    port: int
    protocol: str
    hosts: tuple[str, ...]
    sidecar: str
    inbound_port: int | None
    app_address: str
    health_check: HealthCheck
    rate_limit: RateLimit | None
    subsets: tuple[Subset, ...]
    upstreams: tuple[Upstream, ...]
    tags: tuple[str, ...]
    meta: tuple[tuple[str, str], ...]
    path: str
    tracing: ServiceTracing = ServiceTracing()


@dataclass(frozen=True)
class Intention:
    source: str
    destination: str
    action: str
    paths: tuple[str, ...]
    methods: tuple[str, ...]
    description: str
    path: str

    @property
    def is_l7(self) -> bool:
        return bool(self.paths or self.methods)


@dataclass(frozen=True)
class MeshModel:
    name: str
    trust_domain: str
    datacenter: str
    discovery: str
    default_sidecar: str
    default_policy: str
    denied_upstream: str
    ports: PortRanges
    metrics: MetricsSettings
    consul: ConsulSettings
    paths: Paths
    defaults: TrafficPolicy
    services: dict[str, Service]
    intentions: tuple[Intention, ...]
    intentions_valid: bool = True
    host_addresses: dict[str, str] = field(default_factory=dict)
    tracing: TracingSettings = TracingSettings()
    # Hosts taken out of the mesh (host variable mesh_drained: true): they keep their place in the model, and the
    # planner gives them no service instance, so callers stop using them and their sidecars are removed.
    drained_hosts: frozenset[str] = frozenset()


# --------------------------------------------------------------------------------------------------------------------
# The inventory as the planner sees it
# --------------------------------------------------------------------------------------------------------------------


class Inventory:
    """Ansible's ``groups`` and ``hostvars``, read lazily (``hostvars`` may be Ansible's lazy HostVars)."""

    def __init__(self, groups: Mapping[str, Any] | None, hostvars: Mapping[str, Any] | None) -> None:
        self.groups: Mapping[str, Any] = groups if isinstance(groups, Mapping) else {}
        self.hostvars: Mapping[str, Any] = hostvars if isinstance(hostvars, Mapping) else {}
        self._known_hosts: set[str] | None = None
        self._addresses: dict[str, tuple[str | None, str]] = {}

    def group(self, name: str) -> list[str] | None:
        members = self.groups.get(name)
        if members is None:
            return None
        return [str(host) for host in members]

    def has_host(self, name: str) -> bool:
        return name in self.known_hosts

    @property
    def known_hosts(self) -> set[str]:
        if self._known_hosts is None:
            hosts = {str(host) for host in self.hostvars}
            for members in self.groups.values():
                if isinstance(members, (list, tuple)):
                    hosts.update(str(host) for host in members)
            self._known_hosts = hosts
        return self._known_hosts

    def address(self, host: str) -> tuple[str | None, str]:
        """Return ``(address, "")`` or ``(None, reason)``; the mesh address of ``host``."""
        if host not in self._addresses:
            self._addresses[host] = self._resolve_address(host)
        return self._addresses[host]

    def _resolve_address(self, host: str) -> tuple[str | None, str]:
        try:
            hostvars = self.hostvars[host]
        except KeyError:
            hostvars = {}
        if not isinstance(hostvars, Mapping):
            hostvars = {}
        explicit = hostvars.get("mesh_address")
        if explicit not in (None, ""):
            address = _ip_address(explicit)
            if address is None:
                return None, f"its mesh_address {describe(explicit)} is not an IP address"
            return address, ""
        address = _ip_address(hostvars.get("ansible_host"))
        if address is not None:
            return address, ""
        facts = hostvars.get("ansible_facts")
        for source in (
            facts.get("default_ipv4") if isinstance(facts, Mapping) else None,
            hostvars.get("ansible_default_ipv4"),
        ):
            if isinstance(source, Mapping):
                address = _ip_address(source.get("address"))
                if address is not None:
                    return address, ""
        return None, "it has no mesh_address, no ansible_host that is an IP address and no default IPv4 fact"


def _ip_address(value: Any) -> str | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return None


# --------------------------------------------------------------------------------------------------------------------
# Typed readers: each reports its own error and returns a usable fallback
# --------------------------------------------------------------------------------------------------------------------


class _Reader:
    """Reads typed values out of raw mappings, recording errors in the collector."""

    def __init__(self, collector: ErrorCollector) -> None:
        self.errors = collector

    def mapping(self, value: Any, path: str, what: str = "a mapping") -> dict | None:
        if isinstance(value, Mapping):
            return dict(value)
        self.errors.add(
            InvalidTypeError(
                path, value, f"expected {what}, got {describe(value)}", "write it as a YAML mapping (key: value)"
            )
        )
        return None

    def keys(self, data: Mapping, allowed: Sequence[str], path: str) -> None:
        for key in sorted(data, key=str):
            if key in allowed:
                continue
            fix = did_you_mean(key, allowed, "remove it; allowed keys: " + ", ".join(sorted(allowed)))
            if isinstance(key, bool):
                hint = "did you mean 'retry_on'?" if "retry_on" in allowed else "quote the key"
                fix = f"YAML reads an unquoted on, off, yes or no as a boolean; {hint}"
            self.errors.add(UnknownKeyError(key_path(path, str(key)), key, f"unknown key {describe(key)}", fix))

    def required(self, data: Mapping, key: str, path: str, fix: str) -> bool:
        if key in data and data[key] is not None:
            return True
        self.errors.add(MissingKeyError(key_path(path, key), None, f"missing required key {key!r}", fix))
        return False

    def string(
        self,
        data: Mapping,
        key: str,
        path: str,
        default: str | None = None,
        choices: Sequence[str] | None = None,
        pattern: re.Pattern | None = None,
        pattern_fix: str = "",
    ) -> str | None:
        value = data.get(key)
        if value is None:
            return default
        where = key_path(path, key)
        if not isinstance(value, str):
            self.errors.add(
                InvalidTypeError(
                    where,
                    value,
                    f"expected a string, got {describe(value)}",
                    "quote the value" if choices is None else "use one of: " + ", ".join(choices),
                )
            )
            return default
        if choices is not None and value not in choices:
            self.errors.add(
                InvalidValueError(
                    where,
                    value,
                    f"invalid value {describe(value)}",
                    did_you_mean(value, choices, "use one of: " + ", ".join(choices)),
                )
            )
            return default
        if pattern is not None and not pattern.match(value):
            self.errors.add(InvalidValueError(where, value, f"invalid value {describe(value)}", pattern_fix))
            return default
        return value

    def integer(
        self, data: Mapping, key: str, path: str, default: int | None, minimum: int, maximum: int
    ) -> int | None:
        value = data.get(key)
        if value is None:
            return default
        return self.integer_value(value, key_path(path, key), default, minimum, maximum)

    def integer_value(self, value: Any, where: str, default: int | None, minimum: int, maximum: int) -> int | None:
        number: int | None = None
        if isinstance(value, int) and not isinstance(value, bool):
            number = value
        elif isinstance(value, str) and value.strip().isdigit():
            number = int(value.strip())
        if number is None:
            self.errors.add(
                InvalidTypeError(
                    where,
                    value,
                    f"expected an integer, got {describe(value)}",
                    f"write a whole number from {minimum} to {maximum}",
                )
            )
            return default
        if not minimum <= number <= maximum:
            self.errors.add(
                OutOfRangeError(where, value, f"{number} is out of range", f"use a number from {minimum} to {maximum}")
            )
            return default
        return number

    def boolean(self, data: Mapping, key: str, path: str, default: bool) -> bool:
        value = data.get(key)
        if value is None:
            return default
        if isinstance(value, bool):
            return value
        self.errors.add(
            InvalidTypeError(
                key_path(path, key), value, f"expected a boolean, got {describe(value)}", "write true or false"
            )
        )
        return default

    def duration_ms(
        self,
        data: Mapping,
        key: str,
        path: str,
        default: int | None,
        minimum_ms: int = 1,
        maximum_ms: int = _MAX_DURATION_MS,
    ) -> int | None:
        value = data.get(key)
        if value is None:
            return default
        where = key_path(path, key)
        millis = parse_duration_ms(value)
        if millis is None:
            self.errors.add(
                InvalidDurationError(
                    where,
                    value,
                    f"invalid duration {describe(value)}",
                    "write a duration such as '250ms', '5s', '1m30s' or '1h'",
                )
            )
            return default
        if not minimum_ms <= millis <= maximum_ms:
            self.errors.add(
                OutOfRangeError(
                    where,
                    value,
                    f"duration {describe(value)} is out of range",
                    f"use a duration from {format_duration(minimum_ms)} to {format_duration(maximum_ms)}",
                )
            )
            return default
        return millis

    def string_list(self, data: Mapping, key: str, path: str, check: Callable[[str, str], bool]) -> tuple[str, ...]:
        value = data.get(key)
        if value is None:
            return ()
        where = key_path(path, key)
        if isinstance(value, str) or not isinstance(value, (list, tuple)):
            self.errors.add(
                InvalidTypeError(
                    where, value, f"expected a list of strings, got {describe(value)}", "write a YAML list"
                )
            )
            return ()
        items: list[str] = []
        for index, item in enumerate(value):
            item_path = key_path(where, index)
            if not isinstance(item, str):
                self.errors.add(
                    InvalidTypeError(item_path, item, f"expected a string, got {describe(item)}", "quote the value")
                )
            elif check(item, item_path) and item not in items:
                items.append(item)
        return tuple(items)


def parse_duration_ms(value: Any) -> int | None:
    """``'1m30s'`` -> 90000; ``None`` when the value is not a duration or not a whole number of milliseconds."""
    if not isinstance(value, str) or not _DURATION.match(value):
        return None
    total = 0.0
    for number, unit in _DURATION_PART.findall(value):
        total += float(number) * _DURATION_UNIT_MS[unit]
    if total != int(total):
        return None
    return int(total)


def format_duration(millis: int) -> str:
    for unit, size in (("h", 3600000), ("m", 60000), ("s", 1000)):
        if millis % size == 0:
            return f"{millis // size}{unit}"
    return f"{millis}ms"


# --------------------------------------------------------------------------------------------------------------------
# Traffic policy layers: built-in defaults <- mesh.defaults <- destination service <- upstream
# --------------------------------------------------------------------------------------------------------------------

POLICY_KEYS = ("connect_timeout", "request_timeout", "retries", "circuit_breaker", "outlier_detection")
_RETRY_KEYS = ("attempts", "retry_on", "per_try_timeout")
_BREAKER_KEYS = ("max_connections", "max_pending_requests", "max_requests", "max_retries")
_OUTLIER_KEYS = ("enabled", "consecutive_5xx", "interval", "base_ejection_time", "max_ejection_percent")


@dataclass
class _PolicyLayer:
    """The policy keys set at one level, with the key path where each was set."""

    path: str
    values: dict[str, Any] = field(default_factory=dict)

    def l7_keys(self) -> list[str]:
        keys = []
        if "request_timeout" in self.values:
            keys.append(key_path(self.path, "request_timeout"))
        retries = self.values.get("retries", {})
        if "per_try_timeout" in retries:
            keys.append(key_path(self.path, "retries", "per_try_timeout"))
        if any(condition not in RETRY_ON_L4 for condition in retries.get("retry_on", ())):
            keys.append(key_path(self.path, "retries", "retry_on"))
        return keys


def _read_policy_layer(reader: _Reader, data: Mapping, path: str) -> _PolicyLayer:
    layer = _PolicyLayer(path)
    connect = reader.duration_ms(data, "connect_timeout", path, None, maximum_ms=3600 * 1000)
    if connect is not None:
        layer.values["connect_timeout"] = connect
    request = reader.duration_ms(data, "request_timeout", path, None)
    if request is not None:
        layer.values["request_timeout"] = request
    for key, reader_fn in (
        ("retries", _read_retries),
        ("circuit_breaker", _read_circuit_breaker),
        ("outlier_detection", _read_outlier_detection),
    ):
        if data.get(key) is not None:
            raw = reader.mapping(data[key], key_path(path, key))
            if raw is not None:
                layer.values[key] = reader_fn(reader, raw, key_path(path, key))
    return layer


def _read_retries(reader: _Reader, data: Mapping, path: str) -> dict[str, Any]:
    reader.keys(data, _RETRY_KEYS, path)
    values: dict[str, Any] = {}
    attempts = reader.integer(data, "attempts", path, None, 0, 10)
    if attempts is not None:
        values["attempts"] = attempts
    if data.get("retry_on") is not None:
        values["retry_on"] = reader.string_list(
            data,
            "retry_on",
            path,
            lambda item, where: _check_choice(reader, item, where, RETRY_ON_ALL, "retry condition"),
        )
    per_try = reader.duration_ms(data, "per_try_timeout", path, None)
    if per_try is not None:
        values["per_try_timeout"] = per_try
    return values


def _read_circuit_breaker(reader: _Reader, data: Mapping, path: str) -> dict[str, Any]:
    reader.keys(data, _BREAKER_KEYS, path)
    values: dict[str, Any] = {}
    for key in _BREAKER_KEYS:
        number = reader.integer(data, key, path, None, 0 if key == "max_retries" else 1, 1000000)
        if number is not None:
            values[key] = number
    return values


def _read_outlier_detection(reader: _Reader, data: Mapping, path: str) -> dict[str, Any]:
    reader.keys(data, _OUTLIER_KEYS, path)
    values: dict[str, Any] = {}
    if data.get("enabled") is not None:
        values["enabled"] = reader.boolean(data, "enabled", path, True)
    for key, minimum, maximum in (("consecutive_5xx", 1, 1000), ("max_ejection_percent", 0, 100)):
        number = reader.integer(data, key, path, None, minimum, maximum)
        if number is not None:
            values[key] = number
    for key in ("interval", "base_ejection_time"):
        millis = reader.duration_ms(data, key, path, None)
        if millis is not None:
            values[key] = millis
    return values


def _check_choice(reader: _Reader, value: str, where: str, choices: Sequence[str], what: str) -> bool:
    if value in choices:
        return True
    reader.errors.add(
        InvalidValueError(
            where,
            value,
            f"unknown {what} {describe(value)}",
            did_you_mean(value, choices, "use one of: " + ", ".join(choices)),
        )
    )
    return False


def _merge_policy(layers: Sequence[_PolicyLayer], protocol: str) -> TrafficPolicy:
    """Fold layers (lowest precedence first) into a full policy for an upstream of ``protocol``."""
    base = TrafficPolicy()
    connect = base.connect_timeout_ms
    request = base.request_timeout_ms
    retries = {"attempts": base.retries.attempts, "retry_on": base.retries.retry_on, "per_try_timeout": None}
    breaker = dict(base.circuit_breaker.__dict__)
    outlier = {
        "enabled": base.outlier_detection.enabled,
        "consecutive_5xx": base.outlier_detection.consecutive_5xx,
        "interval": base.outlier_detection.interval_ms,
        "base_ejection_time": base.outlier_detection.base_ejection_time_ms,
        "max_ejection_percent": base.outlier_detection.max_ejection_percent,
    }
    for layer in layers:
        connect = layer.values.get("connect_timeout", connect)
        request = layer.values.get("request_timeout", request)
        retries.update(layer.values.get("retries", {}))
        breaker.update(layer.values.get("circuit_breaker", {}))
        outlier.update(layer.values.get("outlier_detection", {}))
    conditions = tuple(sorted(set(retries["retry_on"]) & set(_retry_conditions_for(protocol))))
    return TrafficPolicy(
        connect_timeout_ms=connect,
        request_timeout_ms=request,
        retries=Retries(
            attempts=retries["attempts"],
            retry_on=conditions,
            per_try_timeout_ms=None if protocol == "tcp" else retries["per_try_timeout"],
        ),
        circuit_breaker=CircuitBreaker(**breaker),
        outlier_detection=OutlierDetection(
            enabled=outlier["enabled"],
            consecutive_5xx=outlier["consecutive_5xx"],
            interval_ms=outlier["interval"],
            base_ejection_time_ms=outlier["base_ejection_time"],
            max_ejection_percent=outlier["max_ejection_percent"],
        ),
    )


def _retry_conditions_for(protocol: str) -> tuple[str, ...]:
    if protocol == "tcp":
        return RETRY_ON_L4
    if protocol == "grpc":
        return RETRY_ON_HTTP + RETRY_ON_GRPC
    return RETRY_ON_HTTP


# --------------------------------------------------------------------------------------------------------------------
# The parser
# --------------------------------------------------------------------------------------------------------------------

_MESH_KEYS = (
    "name",
    "trust_domain",
    "datacenter",
    "discovery",
    "default_sidecar",
    "default_policy",
    "denied_upstream",
    "ports",
    "metrics",
    "tracing",
    "consul",
    "paths",
    "defaults",
    "services",
    "intentions",
)
_SERVICE_KEYS = (
    "port",
    "protocol",
    "hosts",
    "sidecar",
    "inbound_port",
    "app_address",
    "health_check",
    "rate_limit",
    "subsets",
    "upstreams",
    "tags",
    "meta",
    "tracing",
    *POLICY_KEYS,
)
_UPSTREAM_KEYS = ("service", "local_port", "split", *POLICY_KEYS)
_INTENTION_KEYS = ("source", "destination", "action", "paths", "methods", "description")


@dataclass
class _RawService:
    """A service after its own keys are read, before cross-references are resolved."""

    service: Service
    layer: _PolicyLayer
    upstreams: list[tuple[dict, str, _PolicyLayer]]


class _MeshParser:
    def __init__(self, inventory: Inventory, collector: ErrorCollector) -> None:
        self.inventory = inventory
        self.errors = collector
        self.read = _Reader(collector)
        self._reported_hosts: set[str] = set()
        self._policies: dict[tuple, TrafficPolicy] = {}

    # -- top level ---------------------------------------------------------------------------------------------

    def parse(self, raw: Any) -> MeshModel | None:
        data = self.read.mapping(raw, "mesh", "the mesh variable to be a mapping")
        if data is None:
            return None
        self.read.keys(data, _MESH_KEYS, "mesh")
        name = "mesh"
        if self.read.required(data, "name", "mesh", "add name: <lowercase DNS label>, for example name: shop"):
            name = self.read.string(data, "name", "mesh", "mesh", pattern=_DNS_LABEL, pattern_fix=_LABEL_FIX) or name
        default_sidecar = self.read.string(data, "default_sidecar", "mesh", "envoy", SIDECARS) or "envoy"
        defaults_raw = self.read.mapping(data["defaults"], "mesh.defaults") if data.get("defaults") is not None else {}
        defaults_layer = _PolicyLayer("mesh.defaults")
        if defaults_raw is not None:
            self.read.keys(defaults_raw, POLICY_KEYS, "mesh.defaults")
            defaults_layer = _read_policy_layer(self.read, defaults_raw, "mesh.defaults")
        services = self._services(data, default_sidecar, defaults_layer)
        errors_before = len(self.errors)
        intentions = self._intentions(data, services)
        intentions_valid = len(self.errors) == errors_before
        addresses = {
            host: self.inventory.address(host)[0] or "" for service in services.values() for host in service.hosts
        }
        tracing = self._tracing(data, services)
        drained = self._drained_hosts(addresses)
        return MeshModel(
            name=name,
            trust_domain=self.read.string(
                data,
                "trust_domain",
                "mesh",
                name + ".mesh",
                pattern=_DNS_NAME,
                pattern_fix="use a lowercase DNS name such as 'shop.mesh'",
            )
            or name + ".mesh",
            datacenter=self.read.string(data, "datacenter", "mesh", "dc1", pattern=_DNS_LABEL, pattern_fix=_LABEL_FIX)
            or "dc1",
            discovery=self.read.string(data, "discovery", "mesh", "consul", DISCOVERIES) or "consul",
            default_sidecar=default_sidecar,
            default_policy=self.read.string(data, "default_policy", "mesh", "deny", POLICIES) or "deny",
            denied_upstream=self.read.string(data, "denied_upstream", "mesh", "error", DENIED_UPSTREAM_MODES)
            or "error",
            ports=self._ports(data),
            metrics=self._metrics(data),
            consul=self._consul(data),
            paths=self._paths(data),
            defaults=_merge_policy([defaults_layer], "http"),
            services=services,
            intentions=intentions,
            intentions_valid=intentions_valid,
            host_addresses=addresses,
            tracing=tracing,
            drained_hosts=drained,
        )

    def _drained_hosts(self, hosts: Iterable[str]) -> frozenset[str]:
        """The hosts whose variable mesh_drained is true (playbooks/drain.yml sets it for the host it drains)."""
        drained = set()
        for host in sorted(hosts):
            try:
                hostvars = self.inventory.hostvars[host]
            except KeyError:
                hostvars = None
            value = hostvars.get("mesh_drained") if isinstance(hostvars, Mapping) else None
            # -e mesh_drained=true gives a string
            flag = {"true": True, "false": False}.get(value.lower(), value) if isinstance(value, str) else value
            if flag is None or flag is False:
                continue
            if flag is True:
                drained.add(host)
                continue
            self.errors.add(
                InvalidTypeError(
                    f"host variable mesh_drained of {host}",
                    value,
                    f"{describe(value)} is not a boolean",
                    "set it to true to keep the host out of the mesh, or false (the default)",
                )
            )
        return frozenset(drained)

    def _section(self, data: Mapping, key: str, allowed: Sequence[str]) -> dict:
        if data.get(key) is None:
            return {}
        section = self.read.mapping(data[key], key_path("mesh", key))
        if section is None:
            return {}
        self.read.keys(section, allowed, key_path("mesh", key))
        return section

    def _ports(self, data: Mapping) -> PortRanges:
        section = self._section(data, "ports", ("inbound", "admin", "metrics"))
        defaults = PortRanges()
        ranges: dict[str, PortRange] = {}
        for kind in ("inbound", "admin", "metrics"):
            fallback = getattr(defaults, kind)
            ranges[kind] = self._port_range(section, kind, fallback)
        kinds = sorted(ranges)
        for index, first in enumerate(kinds):
            for second in kinds[index + 1 :]:
                # report on the range the user set
                other, kind = (second, first) if second not in section and first in section else (first, second)
                one, two = ranges[other], ranges[kind]
                if one.start <= two.end and two.start <= one.end:
                    self.errors.add(
                        InvalidValueError(
                            key_path("mesh.ports", kind),
                            f"{two.start}-{two.end}",
                            f"port range {two.start}-{two.end} overlaps mesh.ports.{other} ({one.start}-{one.end})",
                            "give each kind of port its own range",
                        )
                    )
        return PortRanges(**ranges)

    def _port_range(self, section: Mapping, kind: str, fallback: PortRange) -> PortRange:
        if section.get(kind) is None:
            return fallback
        path = key_path("mesh.ports", kind)
        raw = self.read.mapping(section[kind], path)
        if raw is None:
            return fallback
        self.read.keys(raw, ("start", "end"), path)
        start = self.read.integer(raw, "start", path, fallback.start, 1024, 65535)
        end = self.read.integer(raw, "end", path, fallback.end, 1024, 65535)
        if start is None or end is None or start > end:
            self.errors.add(
                OutOfRangeError(
                    path,
                    raw,
                    f"start {start} is above end {end}",
                    "write start <= end, for example {start: 21000, end: 24999}",
                )
            )
            return fallback
        return PortRange(start, end)

    def _metrics(self, data: Mapping) -> MetricsSettings:
        section = self._section(data, "metrics", ("expose", "path"))
        return MetricsSettings(
            expose=self.read.boolean(section, "expose", "mesh.metrics", False),
            path=self.read.string(
                section,
                "path",
                "mesh.metrics",
                "/metrics",
                pattern=_HTTP_PATH,
                pattern_fix="write an HTTP path starting with '/'",
            )
            or "/metrics",
        )

    # -- tracing ---------------------------------------------------------------------------------------------------

    def _sampling(self, data: Mapping, path: str) -> float | None:
        value = data.get("sampling")
        if value is None:
            return None
        where = key_path(path, "sampling")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.errors.add(
                InvalidTypeError(
                    where,
                    value,
                    f"expected a percentage (a number), got {describe(value)}",
                    "write a number from 0 to 100 without a % sign, such as 10 for 10 % of the requests",
                )
            )
            return None
        if not 0 <= value <= 100:
            self.errors.add(
                OutOfRangeError(
                    where,
                    value,
                    f"sampling rate {value} % is outside 0-100 %",
                    "write a percentage from 0 (trace nothing) to 100 (trace every request), such as 10",
                )
            )
            return None
        return float(value)

    def _service_tracing(self, data: Mapping, path: str) -> ServiceTracing:
        if data.get("tracing") is None:
            return ServiceTracing()
        where = key_path(path, "tracing")
        section = self.read.mapping(data["tracing"], where)
        if section is None:
            return ServiceTracing()
        self.read.keys(section, ("enabled", "sampling"), where)
        enabled = section.get("enabled")
        return ServiceTracing(
            enabled=self.read.boolean(section, "enabled", where, False) if enabled is not None else None,
            sampling=self._sampling(section, where),
        )

    def _tracing(self, data: Mapping, services: Mapping[str, Service]) -> TracingSettings:
        section = self._section(data, "tracing", ("enabled", "sampling", "backend"))
        enabled = self.read.boolean(section, "enabled", "mesh.tracing", False)
        sampling = self._sampling(section, "mesh.tracing")
        errors_before = len(self.errors)
        backend = self._tracing_backend(section)
        backend_reported = len(self.errors) > errors_before
        # Every service that ends up tracing needs the backend.
        tracing_services = sorted(
            name
            for name, service in services.items()
            if (service.tracing.enabled if service.tracing.enabled is not None else enabled)
        )
        if tracing_services and backend is None and not backend_reported:
            which = "mesh.tracing.enabled" if enabled else f"mesh.services.{tracing_services[0]}.tracing.enabled"
            self.errors.add(
                MissingKeyError(
                    "mesh.tracing.backend",
                    section.get("backend"),
                    f"{which} is true but no trace backend is set (tracing services: {', '.join(tracing_services)})",
                    "add backend: {host: <inventory host running the trace backend>, port: 9411}, "
                    "or backend: {address: <IP address>, port: 9411}; or set enabled: false",
                )
            )
        return TracingSettings(
            enabled=enabled,
            sampling=100.0 if sampling is None else sampling,
            backend=backend,
        )

    def _tracing_backend(self, section: Mapping) -> TracingBackend | None:
        if section.get("backend") is None:
            return None
        path = "mesh.tracing.backend"
        raw = self.read.mapping(section["backend"], path)
        if raw is None:
            return None
        self.read.keys(raw, ("host", "address", "port", "path"), path)
        port = self.read.integer(raw, "port", path, 9411, 1, 65535) or 9411
        collector_path = (
            self.read.string(
                raw,
                "path",
                path,
                "/api/v2/spans",
                pattern=_HTTP_PATH,
                pattern_fix="write the collector's HTTP path, such as '/api/v2/spans'",
            )
            or "/api/v2/spans"
        )
        host = raw.get("host")
        address = raw.get("address")
        if (host is None) == (address is None):
            self.errors.add(
                InvalidValueError(
                    path,
                    raw,
                    "set exactly one of host and address" if host is not None else "no host or address is set",
                    "write host: <inventory host running the trace backend> or address: <its IP address>",
                )
            )
            return None
        if host is not None:
            where = key_path(path, "host")
            if not isinstance(host, str) or not self.inventory.has_host(host):
                self.errors.add(
                    UnknownHostError(
                        where,
                        host,
                        f"{describe(host)} is not a host of the inventory",
                        did_you_mean(
                            str(host),
                            sorted(self.inventory.known_hosts),
                            "name a host of the inventory, or give the backend's IP address as address",
                        ),
                    )
                )
                return None
            resolved, reason = self.inventory.address(host)
            if resolved is None:
                self.errors.add(
                    MissingAddressError(
                        where, host, f"the trace backend's host {host} has no address: {reason}", "set its mesh_address"
                    )
                )
                return None
            return TracingBackend(address=resolved, port=port, host=host, path=collector_path)
        resolved = _ip_address(address)
        if resolved is None:
            self.errors.add(
                InvalidValueError(
                    key_path(path, "address"),
                    address,
                    f"{describe(address)} is not an IP address",
                    "write the trace backend's IP address, or name its inventory host with host:",
                )
            )
            return None
        return TracingBackend(address=resolved, port=port, path=collector_path)

    def _consul(self, data: Mapping) -> ConsulSettings:
        section = self._section(data, "consul", ("domain", "dns_address", "dns_port"))
        dns_address = self.read.string(section, "dns_address", "mesh.consul", "127.0.0.1") or "127.0.0.1"
        if _ip_address(dns_address) is None:
            self.errors.add(
                InvalidValueError(
                    "mesh.consul.dns_address",
                    dns_address,
                    f"{describe(dns_address)} is not an IP address",
                    "write the IP address of the local Consul agent's DNS interface",
                )
            )
            dns_address = "127.0.0.1"
        return ConsulSettings(
            domain=self.read.string(
                section,
                "domain",
                "mesh.consul",
                "consul",
                pattern=_DNS_NAME,
                pattern_fix="use a lowercase DNS name such as 'consul'",
            )
            or "consul",
            dns_address=dns_address,
            dns_port=self.read.integer(section, "dns_port", "mesh.consul", 8600, 1, 65535) or 8600,
        )

    def _paths(self, data: Mapping) -> Paths:
        defaults = Paths()
        keys = ("certs", "envoy", "haproxy", "consul", "prometheus")
        section = self._section(data, "paths", keys)
        values = {}
        for key in keys:
            value = self.read.string(
                section,
                key,
                "mesh.paths",
                getattr(defaults, key),
                pattern=_ABS_PATH,
                pattern_fix=f"write an absolute path without spaces, such as {getattr(defaults, key)!r}",
            )
            values[key] = (value or getattr(defaults, key)).rstrip("/") or "/"
        return Paths(**values)

    # -- services ------------------------------------------------------------------------------------------------

    def _services(self, data: Mapping, default_sidecar: str, defaults: _PolicyLayer) -> dict[str, Service]:
        raw_services = data.get("services")
        if raw_services is None:
            self.read.required(data, "services", "mesh", "add services: {<name>: {port: ..., hosts: ...}}")
            return {}
        services_map = self.read.mapping(raw_services, "mesh.services")
        if services_map is None:
            return {}
        parsed: dict[str, _RawService] = {}
        for name in sorted(services_map, key=str):
            path = key_path("mesh.services", str(name))
            if not isinstance(name, str) or not _DNS_LABEL.match(name):
                self.errors.add(InvalidValueError(path, name, f"invalid service name {describe(name)}", _LABEL_FIX))
                continue
            raw = self.read.mapping(services_map[name], path)
            if raw is not None:
                parsed[name] = self._service(name, raw, path, default_sidecar)
        return self._resolve_upstreams(parsed, defaults)

    def _service(self, name: str, data: Mapping, path: str, default_sidecar: str) -> _RawService:
        self.read.keys(data, _SERVICE_KEYS, path)
        port = 1
        if self.read.required(data, "port", path, "add port: <the port the application listens on>"):
            port = self.read.integer(data, "port", path, 1, 1, 65535) or 1
        protocol = self.read.string(data, "protocol", path, "http", PROTOCOLS) or "http"
        hosts: tuple[str, ...] = ()
        if self.read.required(data, "hosts", path, "add hosts: <inventory group> or hosts: [<host>, ...]"):
            hosts = self._hosts(data["hosts"], key_path(path, "hosts"))
        app_address = self.read.string(data, "app_address", path, "127.0.0.1") or "127.0.0.1"
        if _ip_address(app_address) is None:
            self.errors.add(
                InvalidValueError(
                    key_path(path, "app_address"),
                    app_address,
                    f"{describe(app_address)} is not an IP address",
                    "write the IP address the application listens on, usually 127.0.0.1",
                )
            )
            app_address = "127.0.0.1"
        layer = _read_policy_layer(self.read, data, path)
        if protocol == "tcp":
            self._reject_l7(layer.l7_keys(), name)
        service = Service(
            name=name,
            port=port,
            protocol=protocol,
            hosts=hosts,
            sidecar=self.read.string(data, "sidecar", path, default_sidecar, SIDECARS) or default_sidecar,
            inbound_port=self.read.integer(data, "inbound_port", path, None, 1024, 65535),
            app_address=app_address,
            health_check=self._health_check(data, path, protocol, name),
            rate_limit=self._rate_limit(data, path, protocol, name),
            subsets=self._subsets(data, path, hosts),
            upstreams=(),
            tags=self.read.string_list(data, "tags", path, self._check_tag),
            meta=self._meta(data, path),
            path=path,
            tracing=self._service_tracing(data, path),
        )
        return _RawService(service, layer, self._raw_upstreams(data, path))

    def _reject_l7(self, paths: Sequence[str], service: str, value: Any = None) -> None:
        for where in paths:
            self.errors.add(
                L7PolicyOnTcpError(
                    where,
                    value,
                    f"L7 policy on tcp service {service!r}",
                    f"remove it, or set protocol: http, http2 or grpc on mesh.services.{service}",
                )
            )

    def _hosts(self, value: Any, path: str) -> tuple[str, ...]:
        if isinstance(value, str):
            return self._group_hosts(value, path)
        if not isinstance(value, (list, tuple)):
            self.errors.add(
                InvalidTypeError(
                    path,
                    value,
                    f"expected a group name or a list of hosts, got {describe(value)}",
                    "write hosts: <group> or hosts: [<host>, ...]",
                )
            )
            return ()
        if not value:
            self.errors.add(EmptyGroupError(path, value, "the host list is empty", "name at least one inventory host"))
            return ()
        hosts: list[str] = []
        for index, host in enumerate(value):
            where = key_path(path, index)
            if not isinstance(host, str) or not self.inventory.has_host(host):
                self.errors.add(
                    UnknownHostError(
                        where,
                        host,
                        f"unknown host {describe(host)}",
                        did_you_mean(host, self.inventory.known_hosts, "add it to the inventory or fix the name"),
                    )
                )
            elif host in hosts:
                self.errors.add(DuplicateError(where, host, f"host {host!r} is listed twice", "list it once"))
            else:
                hosts.append(host)
        for host in hosts:
            self._check_address(host, path)
        return tuple(sorted(hosts))

    def _group_hosts(self, name: str, path: str) -> tuple[str, ...]:
        members = self.inventory.group(name)
        if members is None:
            if self.inventory.has_host(name):
                fix = f"{name!r} is a host, not a group; write hosts: [{name}]"
            else:
                fix = did_you_mean(name, self.inventory.groups.keys(), "add the group to the inventory or fix the name")
            self.errors.add(UnknownGroupError(path, name, f"unknown inventory group {name!r}", fix))
            return ()
        if not members:
            self.errors.add(
                EmptyGroupError(
                    path,
                    name,
                    f"inventory group {name!r} has no hosts",
                    "add hosts to the group or point hosts at another group",
                )
            )
            return ()
        hosts = tuple(sorted(set(members)))
        for host in hosts:
            self._check_address(host, path)
        return hosts

    def _check_address(self, host: str, path: str) -> None:
        address, reason = self.inventory.address(host)
        if address is None and host not in self._reported_hosts:
            self._reported_hosts.add(host)
            self.errors.add(
                MissingAddressError(
                    path,
                    host,
                    f"host {host!r} has no usable mesh address: {reason}",
                    "set the host variable mesh_address to the host's IP address on the mesh network",
                )
            )

    def _health_check(self, data: Mapping, path: str, protocol: str, service: str) -> HealthCheck:
        if data.get("health_check") is None:
            return HealthCheck()
        where = key_path(path, "health_check")
        raw = self.read.mapping(data["health_check"], where)
        if raw is None:
            return HealthCheck()
        self.read.keys(raw, ("type", "path", "interval", "timeout"), where)
        kind = (
            self.read.string(raw, "type", where, "http" if raw.get("path") is not None else "tcp", HEALTH_CHECK_TYPES)
            or "tcp"
        )
        check_path = self.read.string(
            raw,
            "path",
            where,
            None,
            pattern=_HTTP_PATH,
            pattern_fix="write an HTTP path starting with '/', such as '/healthz'",
        )
        if kind == "http" and check_path is None:
            check_path = "/"
        if kind != "http" and raw.get("path") is not None:
            self.errors.add(
                InvalidValueError(
                    key_path(where, "path"),
                    raw.get("path"),
                    f"a path needs an http health check, not {kind!r}",
                    "set type: http or remove path",
                )
            )
        if protocol == "tcp" and kind != "tcp":
            self._reject_l7([key_path(where, "type")], service, kind)
            kind, check_path = "tcp", None
        if kind == "grpc" and protocol != "grpc":
            self.errors.add(
                InvalidValueError(
                    key_path(where, "type"),
                    kind,
                    f"a grpc health check needs protocol grpc, not {protocol!r}",
                    "use type: http or type: tcp",
                )
            )
            kind = "tcp"
        interval = self.read.duration_ms(raw, "interval", where, 10000, minimum_ms=1000) or 10000
        timeout = self.read.duration_ms(raw, "timeout", where, 2000, minimum_ms=100) or 2000
        if timeout > interval:
            self.errors.add(
                OutOfRangeError(
                    key_path(where, "timeout"),
                    raw.get("timeout"),
                    f"timeout {format_duration(timeout)} is longer than interval {format_duration(interval)}",
                    "make the timeout shorter than the interval",
                )
            )
        return HealthCheck(type=kind, path=check_path, interval_ms=interval, timeout_ms=timeout)

    def _rate_limit(self, data: Mapping, path: str, protocol: str, service: str) -> RateLimit | None:
        if data.get("rate_limit") is None:
            return None
        where = key_path(path, "rate_limit")
        if protocol == "tcp":
            self._reject_l7([where], service, data.get("rate_limit"))
            return None
        raw = self.read.mapping(data["rate_limit"], where)
        if raw is None:
            return None
        self.read.keys(raw, ("requests_per_second", "burst"), where)
        if not self.read.required(raw, "requests_per_second", where, "add requests_per_second: <number>"):
            return None
        rate = self.read.integer(raw, "requests_per_second", where, None, 1, 1000000)
        if rate is None:
            return None
        burst = self.read.integer(raw, "burst", where, rate, 1, 10000000) or rate
        if burst < rate:
            self.errors.add(
                OutOfRangeError(
                    key_path(where, "burst"),
                    burst,
                    f"burst {burst} is below requests_per_second {rate}",
                    f"set burst to at least {rate} or leave it out",
                )
            )
            burst = rate
        return RateLimit(requests_per_second=rate, burst=burst)

    def _subsets(self, data: Mapping, path: str, service_hosts: tuple[str, ...]) -> tuple[Subset, ...]:
        if data.get("subsets") is None:
            return ()
        where = key_path(path, "subsets")
        raw = self.read.mapping(data["subsets"], where)
        if raw is None:
            return ()
        subsets = []
        for name in sorted(raw, key=str):
            subset_path = key_path(where, str(name))
            if not isinstance(name, str) or not _DNS_LABEL.match(name):
                self.errors.add(
                    InvalidValueError(subset_path, name, f"invalid subset name {describe(name)}", _LABEL_FIX)
                )
                continue
            body = self.read.mapping(raw[name], subset_path)
            if body is None:
                continue
            self.read.keys(body, ("hosts",), subset_path)
            if not self.read.required(body, "hosts", subset_path, "add hosts: <group> or hosts: [<host>, ...]"):
                continue
            hosts = self._hosts(body["hosts"], key_path(subset_path, "hosts"))
            outside = [host for host in hosts if host not in service_hosts]
            for host in outside:
                self.errors.add(
                    UnknownHostError(
                        key_path(subset_path, "hosts"),
                        host,
                        f"host {host!r} is not an instance of this service",
                        "add it to {} or remove it from the subset".format(key_path(path, "hosts")),
                    )
                )
            subsets.append(Subset(name=name, hosts=tuple(host for host in hosts if host in service_hosts)))
        return tuple(subsets)

    def _check_tag(self, tag: str, where: str) -> bool:
        if _TAG.match(tag):
            return True
        self.errors.add(
            InvalidValueError(
                where,
                tag,
                f"invalid tag {describe(tag)}",
                "use letters, digits and _ . : = / @ + - (no spaces), at most 128",
            )
        )
        return False

    def _meta(self, data: Mapping, path: str) -> tuple[tuple[str, str], ...]:
        if data.get("meta") is None:
            return ()
        where = key_path(path, "meta")
        raw = self.read.mapping(data["meta"], where)
        if raw is None:
            return ()
        meta = []
        for key in sorted(raw, key=str):
            value = raw[key]
            item = key_path(where, str(key))
            if not isinstance(key, str) or not _META_KEY.match(key) or key.startswith(("consul-", "vmmesh")):
                self.errors.add(
                    InvalidValueError(
                        item,
                        key,
                        f"invalid meta key {describe(key)}",
                        "use letters, digits, '_' and '-' (at most 64), not starting with 'consul-' or 'vmmesh'",
                    )
                )
            elif not isinstance(value, str) or len(value) > 512:
                self.errors.add(
                    InvalidTypeError(
                        item,
                        value,
                        f"expected a string of at most 512 characters, got {describe(value)}",
                        "quote the value",
                    )
                )
            else:
                meta.append((key, value))
        return tuple(meta)

    # -- upstreams -----------------------------------------------------------------------------------------------

    def _raw_upstreams(self, data: Mapping, path: str) -> list[tuple[dict, str, _PolicyLayer]]:
        value = data.get("upstreams")
        if value is None:
            return []
        where = key_path(path, "upstreams")
        if not isinstance(value, (list, tuple)):
            self.errors.add(
                InvalidTypeError(
                    where,
                    value,
                    f"expected a list of upstreams, got {describe(value)}",
                    "write a YAML list of {service: ..., local_port: ...}",
                )
            )
            return []
        upstreams = []
        for index, item in enumerate(value):
            item_path = key_path(where, index)
            raw = self.read.mapping(item, item_path)
            if raw is None:
                continue
            self.read.keys(raw, _UPSTREAM_KEYS, item_path)
            upstreams.append((raw, item_path, _read_policy_layer(self.read, raw, item_path)))
        return upstreams

    def _resolve_upstreams(self, parsed: dict[str, _RawService], defaults: _PolicyLayer) -> dict[str, Service]:
        services: dict[str, Service] = {}
        for name, raw in parsed.items():
            upstreams = []
            seen: dict[str, str] = {}
            for data, path, layer in raw.upstreams:
                upstream = self._upstream(raw.service, data, path, layer, parsed, defaults)
                if upstream is None:
                    continue
                if upstream.service in seen:
                    self.errors.add(
                        DuplicateError(
                            key_path(path, "service"),
                            upstream.service,
                            f"upstream {upstream.service!r} is already declared at {seen[upstream.service]}",
                            "declare each upstream once",
                        )
                    )
                    continue
                seen[upstream.service] = path
                upstreams.append(upstream)
            service = raw.service
            services[name] = replace(service, upstreams=tuple(upstreams))
        return services

    def _upstream(
        self,
        source: Service,
        data: Mapping,
        path: str,
        layer: _PolicyLayer,
        services: dict[str, _RawService],
        defaults: _PolicyLayer,
    ) -> Upstream | None:
        if not self.read.required(data, "service", path, "add service: <name of the service to call>"):
            return None
        name = data["service"]
        if not isinstance(name, str) or name not in services:
            self.errors.add(
                UnknownServiceError(
                    key_path(path, "service"),
                    name,
                    f"unknown service {describe(name)}",
                    did_you_mean(name, services, "declare it under mesh.services or fix the name"),
                )
            )
            return None
        local_port = 1
        if self.read.required(data, "local_port", path, "add local_port: <port the application dials on 127.0.0.1>"):
            local_port = self.read.integer(data, "local_port", path, 1, 1, 65535) or 1
        destination = services[name]
        protocol = destination.service.protocol
        if protocol == "tcp":
            self._reject_l7(layer.l7_keys(), name)
        if source.sidecar == "haproxy":
            self._reject_grpc_retries(layer, source.name)
        split = self._split(data, path, destination.service)
        policy = self._policy([defaults, destination.layer, layer], protocol, source.sidecar)
        return Upstream(service=name, local_port=local_port, policy=policy, split=split, path=path)

    def _policy(self, layers: Sequence[_PolicyLayer], protocol: str, sidecar: str) -> TrafficPolicy:
        """Merged policy, shared between upstreams with the same layers (most upstreams use the defaults).

        The haproxy sidecar cannot retry on gRPC status codes: inherited ones are dropped for its upstreams (set on
        the upstream itself they are an error, see ``_reject_grpc_retries``).
        """
        key = (protocol, sidecar, *(repr(sorted(layer.values.items())) for layer in layers))
        policy = self._policies.get(key)
        if policy is None:
            policy = _merge_policy(layers, protocol)
            if sidecar == "haproxy":
                kept = tuple(condition for condition in policy.retries.retry_on if condition not in RETRY_ON_GRPC)
                policy = replace(policy, retries=replace(policy.retries, retry_on=kept))
            self._policies[key] = policy
        return policy

    def _reject_grpc_retries(self, layer: _PolicyLayer, source: str) -> None:
        for condition in layer.values.get("retries", {}).get("retry_on", ()):
            if condition in RETRY_ON_GRPC:
                self.errors.add(
                    UnsupportedBySidecarError(
                        key_path(layer.path, "retries", "retry_on"),
                        condition,
                        f"retry condition {condition!r} is not supported by the haproxy sidecar of {source!r}",
                        f"remove it, or set sidecar: envoy on mesh.services.{source}",
                    )
                )

    def _split(self, data: Mapping, path: str, destination: Service) -> tuple[SplitEntry, ...]:
        value = data.get("split")
        if value is None:
            return ()
        where = key_path(path, "split")
        if destination.protocol == "tcp":
            self._reject_l7([where], destination.name, value)
            return ()
        if not isinstance(value, (list, tuple)) or not value:
            self.errors.add(
                InvalidTypeError(
                    where,
                    value,
                    f"expected a non-empty list of {{subset, weight}}, got {describe(value)}",
                    "write split: [{subset: v1, weight: 90}, ...]",
                )
            )
            return ()
        subsets = {subset.name for subset in destination.subsets}
        entries: list[SplitEntry] = []
        for index, item in enumerate(value):
            entry = self._split_entry(item, key_path(where, index), destination, subsets, entries)
            if entry is not None:
                entries.append(entry)
        total = sum(entry.weight for entry in entries)
        if len(entries) == len(value) and total != 100:
            self.errors.add(
                SplitWeightError(
                    where,
                    [entry.weight for entry in entries],
                    f"split weights sum to {total}, not 100",
                    "adjust the weights so that they add up to 100",
                )
            )
            return ()
        return tuple(entries) if len(entries) == len(value) else ()

    def _split_entry(
        self, item: Any, where: str, destination: Service, subsets: set[str], entries: list[SplitEntry]
    ) -> SplitEntry | None:
        raw = self.read.mapping(item, where)
        if raw is None:
            return None
        self.read.keys(raw, ("subset", "weight"), where)
        if not self.read.required(raw, "subset", where, "add subset: <subset name>"):
            return None
        if not self.read.required(raw, "weight", where, "add weight: <0-100>"):
            return None
        subset = raw["subset"]
        weight = self.read.integer(raw, "weight", where, None, 0, 100)
        if not isinstance(subset, str) or subset not in subsets:
            known = ", ".join(sorted(subsets)) or "none"
            fix = did_you_mean(
                subset,
                subsets,
                f"use a subset of {destination.name} ({known}) or declare it under "
                f"mesh.services.{destination.name}.subsets",
            )
            self.errors.add(
                UnknownSubsetError(
                    key_path(where, "subset"),
                    subset,
                    f"unknown subset {describe(subset)} of service {destination.name!r}",
                    fix,
                )
            )
            return None
        if any(entry.subset == subset for entry in entries):
            self.errors.add(
                DuplicateError(
                    key_path(where, "subset"), subset, f"subset {subset!r} is split twice", "name each subset once"
                )
            )
            return None
        if weight is None:
            return None
        return SplitEntry(subset=subset, weight=weight)

    # -- intentions ----------------------------------------------------------------------------------------------

    def _intentions(self, data: Mapping, services: dict[str, Service]) -> tuple[Intention, ...]:
        value = data.get("intentions")
        if value is None:
            return ()
        if not isinstance(value, (list, tuple)):
            self.errors.add(
                InvalidTypeError(
                    "mesh.intentions",
                    value,
                    f"expected a list of intentions, got {describe(value)}",
                    "write a YAML list of {source, destination, action}",
                )
            )
            return ()
        intentions: list[Intention] = []
        seen: dict[tuple[str, str], str] = {}
        for index, item in enumerate(value):
            path = key_path("mesh.intentions", index)
            intention = self._intention(item, path, services)
            if intention is None:
                continue
            pair = (intention.source, intention.destination)
            if pair in seen:
                self.errors.add(
                    DuplicateError(
                        path,
                        "{} -> {}".format(*pair),
                        f"intention {pair[0]} -> {pair[1]} is already declared at {seen[pair]}",
                        "keep one intention per pair",
                    )
                )
                continue
            seen[pair] = path
            intentions.append(intention)
        return tuple(intentions)

    def _intention(self, item: Any, path: str, services: dict[str, Service]) -> Intention | None:
        raw = self.read.mapping(item, path)
        if raw is None:
            return None
        self.read.keys(raw, _INTENTION_KEYS, path)
        ends = {}
        for key in ("source", "destination"):
            if not self.read.required(raw, key, path, f"add {key}: <service name or '*'>"):
                return None
            name = raw[key]
            if name != WILDCARD and (not isinstance(name, str) or name not in services):
                self.errors.add(
                    UnknownServiceError(
                        key_path(path, key),
                        name,
                        f"unknown service {describe(name)}",
                        did_you_mean(name, services, "declare it under mesh.services, fix the name or use '*'"),
                    )
                )
                return None
            ends[key] = name
        if not self.read.required(raw, "action", path, "add action: allow or action: deny"):
            return None
        action = self.read.string(raw, "action", path, None, POLICIES)
        if action is None:
            return None
        paths = self.read.string_list(raw, "paths", path, self._check_http_path)
        methods = self.read.string_list(
            raw, "methods", path, lambda item, where: _check_choice(self.read, item, where, HTTP_METHODS, "HTTP method")
        )
        intention = Intention(
            source=ends["source"],
            destination=ends["destination"],
            action=action,
            paths=paths,
            methods=methods,
            description=self.read.string(raw, "description", path, "") or "",
            path=path,
        )
        if intention.is_l7:
            self._check_l7_intention(intention, raw, services)
        return intention

    def _check_http_path(self, value: str, where: str) -> bool:
        if _HTTP_PATH.match(value):
            return True
        self.errors.add(
            InvalidValueError(
                where,
                value,
                f"invalid HTTP path {describe(value)}",
                "write a path prefix starting with '/', such as '/api/'",
            )
        )
        return False

    def _check_l7_intention(self, intention: Intention, raw: Mapping, services: dict[str, Service]) -> None:
        where = key_path(intention.path, "paths" if intention.paths else "methods")
        value = raw.get("paths") if intention.paths else raw.get("methods")
        if intention.action != "allow":
            self.errors.add(
                InvalidValueError(
                    where,
                    value,
                    "paths and methods only narrow an allow intention",
                    "set action: allow, or drop paths and methods to deny the source",
                )
            )
        elif intention.destination == WILDCARD:
            self.errors.add(
                InvalidValueError(
                    where,
                    value,
                    "paths and methods need a concrete destination",
                    "name the destination service instead of '*'",
                )
            )
        elif services[intention.destination].protocol == "tcp":
            self._reject_l7([where], intention.destination, value)


def parse_mesh(
    mesh: Any, groups: Mapping[str, Any] | None, hostvars: Mapping[str, Any] | None, collector: ErrorCollector
) -> MeshModel | None:
    """Parse and validate ``mesh``; errors go to ``collector``; ``None`` only when ``mesh`` is not a mapping."""
    return _MeshParser(Inventory(groups, hostvars), collector).parse(mesh)
