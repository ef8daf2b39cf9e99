"""Running the collection's modules in-process, and a small PKI to feed them."""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from ansible.module_utils.testing import patch_module_args
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def run_module(main: Callable[[], None], capsys: pytest.CaptureFixture, **args: Any) -> dict[str, Any]:
    """Run a module's ``main`` with ``args``; its JSON result, with ``failed`` when it failed."""
    with patch_module_args(args), pytest.raises(SystemExit):
        main()
    return json.loads(capsys.readouterr().out)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class IssuingCA:
    """A CA that signs leaves the way the mesh CA does (CN, URI and DNS SANs, serverAuth + clientAuth)."""

    def __init__(self, common_name: str = "vmmesh shop.mesh CA 1") -> None:
        self.key = ec.generate_private_key(ec.SECP384R1())
        self.certificate = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name))
            .issuer_name(_name(common_name))
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(_now() - datetime.timedelta(minutes=5))
            .not_valid_after(_now() + datetime.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        self.pem = self.certificate.public_bytes(serialization.Encoding.PEM).decode()

    def issue(
        self,
        public_key: Any,
        common_name: str = "api",
        uris: tuple[str, ...] = ("spiffe://shop.mesh/ns/default/dc/dc1/svc/api",),
        dns_names: tuple[str, ...] = ("api.service.dc1.consul",),
        lifetime: datetime.timedelta = datetime.timedelta(days=30),
        usages: tuple[Any, ...] = (ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH),
    ) -> str:
        names: list[x509.GeneralName] = [x509.UniformResourceIdentifier(uri) for uri in uris]
        names += [x509.DNSName(name) for name in dns_names]
        certificate = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name))
            .issuer_name(self.certificate.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(_now() - datetime.timedelta(minutes=5))
            .not_valid_after(_now() + lifetime)
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.ExtendedKeyUsage(list(usages)), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        return certificate.public_bytes(serialization.Encoding.PEM).decode()


def private_key_pem(key: Any) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def new_key(kind: str = "ec-p256") -> Any:
    if kind == "ec-p256":
        return ec.generate_private_key(ec.SECP256R1())
    if kind == "ec-p384":
        return ec.generate_private_key(ec.SECP384R1())
    return rsa.generate_private_key(public_exponent=65537, key_size=int(kind.split("-")[1]))


def write_leaf(directory: Path, ca: IssuingCA, key: Any | None = None, bundle: str | None = None, **issue: Any) -> Any:
    """A leaf directory as the role leaves it: cert.pem, key.pem, ca-bundle.pem; returns the key."""
    key = key or new_key()
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "cert.pem").write_text(ca.issue(key.public_key(), **issue))
    (directory / "key.pem").write_bytes(private_key_pem(key))
    (directory / "ca-bundle.pem").write_text(bundle if bundle is not None else ca.pem)
    return key


@pytest.fixture(scope="session")
def ca() -> IssuingCA:
    return IssuingCA()


@pytest.fixture(scope="session")
def next_ca() -> IssuingCA:
    return IssuingCA("vmmesh shop.mesh CA 2")


@pytest.fixture
def run(capsys: pytest.CaptureFixture) -> Callable[..., dict[str, Any]]:
    """``run(main, **args)``: run a module in-process; its JSON result."""

    def _run(main: Callable[[], None], **args: Any) -> dict[str, Any]:
        return run_module(main, capsys, **args)

    return _run


@pytest.fixture(scope="session")
def pki() -> Any:
    """The helpers of this file, for tests: ``pki.write_leaf``, ``pki.new_key``, ``pki.private_key_pem``."""
    import types

    return types.SimpleNamespace(write_leaf=write_leaf, new_key=new_key, private_key_pem=private_key_pem)
