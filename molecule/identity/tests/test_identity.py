"""The mesh identity after converge and idempotence, seen from outside: files, names, owners, where keys are.

Each host is read once (a tar of its certificate and metric files); the CA rotation, renewal and the mTLS
handshakes are proven by side_effect.yml, which runs after these tests.
"""

from __future__ import annotations

import base64
import datetime
import io
import json
import os
import re
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path

import pytest
import testinfra
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

SCENARIO = Path(os.environ["MOLECULE_SCENARIO_DIRECTORY"])
EPHEMERAL = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"])
INVENTORY = Path(os.environ.get("MOLECULE_INVENTORY_FILE", EPHEMERAL / "inventory" / "x")).parent
CA_DIR = EPHEMERAL / "ca"
CERTS = "etc/vmmesh/certs"
TEXTFILE = "var/lib/node_exporter/textfile"
TRUST_DOMAIN = "shop.mesh"

# host -> {certificate directory: (kind, owner, group)}
LAYOUT = {
    "vmmesh-id-web1": {"web": ("haproxy", "root", "root"), "consul": ("client", "root", "root")},
    "vmmesh-id-api1": {"api": ("envoy", "envoy", "envoy"), "consul": ("server", "root", "root")},
    "vmmesh-id-api2": {"api": ("envoy", "envoy", "envoy")},
}
CERTIFICATES = [(host, name) for host, names in LAYOUT.items() for name in names]
SERVICES = [(host, name) for host, name in CERTIFICATES if name != "consul"]


@dataclass
class Entry:
    owner: str
    group: str
    mode: int
    is_dir: bool
    content: bytes


def _host(name: str):
    return testinfra.get_host(f"podman://{name}")


@pytest.fixture(scope="module")
def files() -> dict[str, dict[str, Entry]]:
    """host -> path -> Entry, for everything under /etc/vmmesh/certs and the textfile directory (one read per host)."""
    snapshot: dict[str, dict[str, Entry]] = {}
    for host in LAYOUT:
        output = _host(host).check_output(
            f"tar -C / -cf - {CERTS} $(test -d /{TEXTFILE} && echo {TEXTFILE}) | base64 -w0"
        )
        entries = {}
        with tarfile.open(fileobj=io.BytesIO(base64.b64decode(output))) as archive:
            for member in archive.getmembers():
                handle = archive.extractfile(member) if member.isfile() else None
                content = handle.read() if handle else b""
                entries[member.name] = Entry(member.uname, member.gname, member.mode, member.isdir(), content)
        snapshot[host] = entries
    return snapshot


def _certificate(files: dict, host: str, name: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(files[host][f"{CERTS}/{name}/cert.pem"].content)


def _ca(generation: int = 1) -> x509.Certificate:
    return x509.load_pem_x509_certificate((CA_DIR / "generations" / str(generation) / "ca.pem").read_bytes())


def _san(certificate: x509.Certificate, kind: type) -> list[str]:
    extension = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return sorted(str(value) for value in extension.get_values_for_type(kind))


def _common_name(certificate: x509.Certificate) -> str:
    return certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value


def _ansible_playbook(playbook: str | Path, *args: str) -> subprocess.CompletedProcess:
    """Run a playbook against the scenario's inventory, as molecule runs its own."""
    return subprocess.run(
        ["ansible-playbook", "--inventory", str(INVENTORY), *args, str(playbook)],
        env=dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0"),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


# --- what the certificates say ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("host", "service"), SERVICES)
def test_service_certificate_carries_the_plan_identity(files: dict, host: str, service: str) -> None:
    certificate = _certificate(files, host, service)
    assert _common_name(certificate) == service, "HAProxy authorizes by the CN: it must be the service name"
    identity = f"spiffe://{TRUST_DOMAIN}/ns/default/dc/dc1/svc/{service}"
    assert _san(certificate, x509.UniformResourceIdentifier) == [identity]
    assert _san(certificate, x509.DNSName) == [f"{service}.service.dc1.consul"]
    assert _san(certificate, x509.IPAddress) == []


@pytest.mark.parametrize("host", ["vmmesh-id-web1", "vmmesh-id-api1"])
def test_consul_agent_certificate(files: dict, host: str) -> None:
    role = LAYOUT[host]["consul"][0]
    certificate = _certificate(files, host, "consul")
    assert _common_name(certificate) == f"{role}.dc1.consul"
    extra = ["consul.vmmesh-id-api1"] if host == "vmmesh-id-api1" else []
    assert _san(certificate, x509.DNSName) == sorted([f"{role}.dc1.consul", "localhost", *extra])
    assert _san(certificate, x509.IPAddress) == sorted(["127.0.0.1", *(["10.0.0.21"] if extra else [])])
    assert _san(certificate, x509.UniformResourceIdentifier) == []


@pytest.mark.parametrize(("host", "name"), CERTIFICATES)
def test_certificate_profile_issuer_and_key(files: dict, host: str, name: str) -> None:
    certificate = _certificate(files, host, name)
    ca = _ca(1)
    assert certificate.issuer == ca.subject
    ca.public_key().verify(
        certificate.signature, certificate.tbs_certificate_bytes, ec.ECDSA(certificate.signature_hash_algorithm)
    )
    usage = certificate.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical and usage.value.digital_signature and not usage.value.key_encipherment
    assert not usage.value.key_cert_sign
    assert set(certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == {
        ExtendedKeyUsageOID.SERVER_AUTH,
        ExtendedKeyUsageOID.CLIENT_AUTH,
    }
    assert certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    public_key = certificate.public_key()
    assert isinstance(public_key, ec.EllipticCurvePublicKey) and public_key.curve.name == "secp256r1"
    remaining = certificate.not_valid_after_utc - datetime.datetime.now(datetime.UTC)
    assert datetime.timedelta(days=29, hours=23) < remaining <= datetime.timedelta(days=30)
    key = serialization.load_pem_private_key(files[host][f"{CERTS}/{name}/key.pem"].content, password=None)
    spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert key.public_key().public_bytes(*spki) == public_key.public_bytes(*spki), "the key belongs to the certificate"


def test_ca_certificate_and_state() -> None:
    ca = _ca(1)
    assert _common_name(ca) == f"vmmesh {TRUST_DOMAIN} CA 1"
    assert _san(ca, x509.UniformResourceIdentifier) == [f"spiffe://{TRUST_DOMAIN}"]
    constraints = ca.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca and constraints.value.path_length == 0
    assert (CA_DIR / "trust-bundle.pem").read_bytes() == ca.public_bytes(serialization.Encoding.PEM)
    assert json.loads((CA_DIR / "state.json").read_text()) == {"format_version": 1, "signer": 1, "trusted": [1]}


# --- files, owners, modes -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("host", "name"), CERTIFICATES)
def test_files_owners_and_modes(files: dict, host: str, name: str) -> None:
    kind, owner, group = LAYOUT[host][name]
    directory = files[host][f"{CERTS}/{name}"]
    assert (directory.owner, directory.group, directory.mode, directory.is_dir) == ("root", group, 0o750, True)
    expected = {"cert.pem": 0o644, "key.pem": 0o600, "ca-bundle.pem": 0o644}
    if kind == "haproxy":
        expected["haproxy.pem"] = 0o600
    found = sorted(path.rsplit("/", 1)[1] for path in files[host] if path.startswith(f"{CERTS}/{name}/"))
    assert found == sorted(expected), "no staged key, temporary file, or HAProxy bundle where not wanted"
    for file_name, mode in expected.items():
        entry = files[host][f"{CERTS}/{name}/{file_name}"]
        assert (entry.owner, entry.group, entry.mode) == (owner, group, mode), file_name
    assert files[host][f"{CERTS}/{name}/ca-bundle.pem"].content == (CA_DIR / "trust-bundle.pem").read_bytes()


@pytest.mark.parametrize("host", list(LAYOUT))
def test_only_certificate_directories_and_no_staged_key_left(files: dict, host: str) -> None:
    top = files[host][CERTS]
    assert (top.owner, top.group, top.mode) == ("root", "root", 0o755)
    children = sorted(path.split("/")[3] for path in files[host] if path.startswith(f"{CERTS}/"))
    assert sorted(set(children)) == sorted(LAYOUT[host]), "nothing but the certificate directories"


def test_haproxy_bundle_is_the_certificate_then_its_key(files: dict) -> None:
    web = {name: files["vmmesh-id-web1"][f"{CERTS}/web/{name}"].content for name in ("cert.pem", "key.pem")}
    assert files["vmmesh-id-web1"][f"{CERTS}/web/haproxy.pem"].content == web["cert.pem"] + web["key.pem"]


# --- where the keys are, and are not ------------------------------------------------------------------------------


def test_ca_key_is_encrypted_and_private_on_the_controller() -> None:
    for generation_dir in (CA_DIR / "generations").iterdir():
        key = generation_dir / "ca.key"
        assert key.read_text().startswith("-----BEGIN ENCRYPTED PRIVATE KEY-----")
        assert key.stat().st_mode & 0o777 == 0o600
        assert generation_dir.stat().st_mode & 0o777 == 0o700
    assert (CA_DIR / "state.json").stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize("host", list(LAYOUT))
def test_ca_key_is_never_on_a_host(host: str) -> None:
    lines = (CA_DIR / "generations" / "1" / "ca.key").read_text().splitlines()[1:3]
    patterns = " ".join(f"-e {line!r}" for line in [*lines, "ENCRYPTED PRIVATE KEY"])
    found = _host(host).run(f"grep -rlsIF {patterns} /etc /root /tmp /var /home /srv /opt /usr/local")
    assert found.rc == 1, f"CA key material on {host}: {found.stdout}"


def test_leaf_keys_are_never_on_the_controller(files: dict) -> None:
    # One line of every leaf key, read from the hosts into this process only.
    lines = [files[host][f"{CERTS}/{name}/key.pem"].content.decode().splitlines()[1] for host, name in CERTIFICATES]
    roots = [EPHEMERAL, Path.home() / ".ansible", Path("/tmp")]
    found = subprocess.run(
        ["grep", "-rlsIF", "-f", "-", *map(str, roots)],
        input="\n".join(lines).encode(),
        capture_output=True,
        check=False,
    )
    assert found.returncode == 1, f"leaf key material on the controller: {found.stdout.decode()}"
    assert not list(EPHEMERAL.rglob("key.pem")) and not list(EPHEMERAL.rglob("haproxy.pem"))


# --- the expiry metric --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["vmmesh-id-web1", "vmmesh-id-api1"])
def test_expiry_metric_for_node_exporter(files: dict, host: str) -> None:
    prom = files[host][f"{TEXTFILE}/vmmesh_certificates.prom"]
    assert (prom.owner, prom.group, prom.mode) == ("root", "root", 0o644)
    text = prom.content.decode()
    assert "# TYPE vmmesh_certificate_expiry_timestamp_seconds gauge" in text
    pattern = (
        r'^vmmesh_certificate_expiry_timestamp_seconds\{service="([^"]+)",identity="([^"]+)",serial="([0-9a-f]+)"\}'
    )
    samples = re.findall(pattern + r" (\d+)$", text, re.MULTILINE)
    assert sorted(service for service, *_rest in samples) == sorted(LAYOUT[host])
    for service, identity, serial, value in samples:
        certificate = _certificate(files, host, service)
        assert serial == format(certificate.serial_number, "x")
        assert int(value) == int(certificate.not_valid_after_utc.timestamp())
        expected = (
            _common_name(certificate)
            if service == "consul"
            else f"spiffe://{TRUST_DOMAIN}/ns/default/dc/dc1/svc/{service}"
        )
        assert identity == expected


@pytest.mark.parametrize("host", ["vmmesh-id-web1", "vmmesh-id-api1"])
def test_node_exporter_serves_the_days_left_of_every_certificate(files: dict, host: str) -> None:
    """What Prometheus scrapes: node_exporter's textfile collector serves the file, and the days left are plausible."""
    lab_host = _host(host)
    metrics = lab_host.check_output("curl -sf -m 5 http://127.0.0.1:9100/metrics")
    now = float(lab_host.check_output("date +%s"))
    assert re.search(r"^node_textfile_scrape_error 0$", metrics, re.MULTILINE)
    # node_exporter sorts the labels.
    pattern = (
        r'^vmmesh_certificate_expiry_timestamp_seconds\{identity="[^"]+",serial="([0-9a-f]+)",service="([^"]+)"\}'
        r" (\S+)$"
    )
    samples = {service: (serial, float(value)) for serial, service, value in re.findall(pattern, metrics, re.MULTILINE)}
    assert sorted(samples) == sorted(LAYOUT[host])
    for service, (serial, value) in samples.items():
        certificate = _certificate(files, host, service)
        assert serial == format(certificate.serial_number, "x")
        # vmmesh:certificate_days_left, as the recording rule computes it: 30-day certificates issued minutes ago.
        days_left = (value - now) / 86400
        assert 29.9 <= days_left <= 30.0, f"{service}: {days_left:.3f} days left"


def test_no_metric_without_a_textfile_directory(files: dict) -> None:
    assert not any(path.startswith(TEXTFILE) for path in files["vmmesh-id-api2"])


# --- check mode and the report ------------------------------------------------------------------------------------


def test_check_mode_changes_nothing_on_converged_hosts() -> None:
    # The CA's own four steps are proven in tests/unit/roles/test_mesh_ca_role.py; here the hosts'.
    result = _ansible_playbook(SCENARIO / "converge.yml", "--check", "--limit", "all:!localhost")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    recap = re.findall(r"^(\S+)\s+: ok=\d+\s+changed=(\d+)", result.stdout, re.MULTILINE)
    assert sorted(host for host, _changed in recap) == sorted(LAYOUT)
    assert all(changed == "0" for _name, changed in recap), recap


def test_cert_report_lists_every_certificate_and_warns_when_asked(tmp_path: Path, files: dict) -> None:
    # Failing under the threshold, and passing above it, are proven in tests/unit/playbooks/test_cert_report.py.
    report = tmp_path / "report.json"
    result = _ansible_playbook(
        "vmmesh.mesh.cert_report",
        "-e",
        f"cert_report_json={report}",
        "-e",
        "cert_report_threshold_days=31",
        "-e",
        "cert_report_on_threshold=warn",
    )
    assert result.returncode == 0, result.stdout[-3000:]
    output = " ".join(result.stdout.split())
    assert f"WARNING: {len(CERTIFICATES)} certificate(s) expire within 31" in output
    data = json.loads(report.read_text())
    assert data["unread_hosts"] == [] and data["threshold_days"] == 31.0
    rows = {(row["host"], row["service"]): row for row in data["certificates"]}
    assert sorted(rows) == sorted(CERTIFICATES)
    for (host, name), row in rows.items():
        certificate = _certificate(files, host, name)
        assert row["serial"] == format(certificate.serial_number, "x")
        assert row["issuer"] == f"vmmesh {TRUST_DOMAIN} CA 1"
        assert 29.9 <= row["days_left"] <= 30.0
        assert row["trusted"] is True and row["trust_bundle"] == [f"vmmesh {TRUST_DOMAIN} CA 1"]
        if name != "consul":
            assert row["identity"] == f"spiffe://{TRUST_DOMAIN}/ns/default/dc/dc1/svc/{name}"
    assert f"vmmesh-id-api2 | api | spiffe://{TRUST_DOMAIN}/ns/default/dc/dc1/svc/api" in output
