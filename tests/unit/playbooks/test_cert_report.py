"""playbooks/cert_report.yml on the controller itself: two local "hosts" with certificates of different ages."""

from __future__ import annotations

import datetime
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from ansible_collections.vmmesh.mesh.tests.unit.ansible_playbook import assert_failed_with, flat_output, run_playbook
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

ROOT = Path(__file__).resolve().parents[3]
ANSIBLE_PLAYBOOK = Path(sys.executable).parent / "ansible-playbook"


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write_leaf(directory: Path, ca_key: ec.EllipticCurvePrivateKey, service: str, days: float) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(_name(service))
        .issuer_name(_name("vmmesh test.mesh CA 1"))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.UniformResourceIdentifier(f"spiffe://test.mesh/ns/default/dc/dc1/svc/{service}")]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    directory.mkdir(parents=True)
    (directory / "cert.pem").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    (directory / "key.pem").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return certificate


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Inventory of h1 (web, 30 days left; a textfile directory) and h2 (api, 2 days left; none)."""
    root = tmp_path_factory.mktemp("report")
    ca_key = ec.generate_private_key(ec.SECP256R1())
    certificates = {
        "h1": _write_leaf(root / "h1" / "certs" / "web", ca_key, "web", 30),
        "h2": _write_leaf(root / "h2" / "certs" / "api", ca_key, "api", 2),
    }
    (root / "h1" / "textfile").mkdir()
    hosts = {
        name: {
            "ansible_connection": "local",
            "ansible_python_interpreter": sys.executable,
            "ansible_become": False,
            "certificates_dir": str(root / name / "certs"),
            "certificates_textfile_dir": str(root / name / "textfile"),
        }
        for name in ("h1", "h2")
    }
    inventory = root / "hosts.yml"
    inventory.write_text(yaml.safe_dump({"all": {"hosts": hosts}}))
    return {"root": root, "inventory": inventory, "certificates": certificates}


def _report(lab: dict, *extra: str) -> subprocess.CompletedProcess:
    options = [option for argument in extra for option in ("-e", argument)]
    return run_playbook(ROOT / "playbooks" / "cert_report.yml", lab["inventory"], *options)


def test_the_report_lists_every_certificate_soonest_first(lab: dict) -> None:
    target = lab["root"] / "report.json"
    result = _report(lab, "cert_report_threshold_days=1", f"cert_report_json={target}")
    assert result.returncode == 0, result.stdout + result.stderr
    data = json.loads(target.read_text())
    assert [(row["host"], row["service"]) for row in data["certificates"]] == [("h2", "api"), ("h1", "web")]
    api = data["certificates"][0]
    assert api["identity"] == "spiffe://test.mesh/ns/default/dc/dc1/svc/api"
    assert api["issuer"] == "vmmesh test.mesh CA 1"
    assert api["serial"] == format(lab["certificates"]["h2"].serial_number, "x")
    assert 1.9 <= api["days_left"] <= 2.0
    assert data["unread_hosts"] == []
    assert "h2 | api | spiffe://test.mesh/ns/default/dc/dc1/svc/api | api | vmmesh test.mesh CA 1" in flat_output(
        result
    )


def test_the_report_fails_under_the_threshold(lab: dict) -> None:
    result = _report(lab, "cert_report_threshold_days=7")
    assert result.returncode != 0
    assert re.search(r"1 certificate\(s\) expire within 7 days: h2 api (2\.0|1\.9);", flat_output(result))
    assert "cert_report_on_threshold=warn" in flat_output(result)


def test_the_report_only_warns_when_asked(lab: dict) -> None:
    result = _report(lab, "cert_report_threshold_days=7", "cert_report_on_threshold=warn")
    assert result.returncode == 0, result.stdout
    assert "WARNING: 1 certificate(s) expire within 7 days: h2 api" in flat_output(result)


def test_the_report_writes_the_metric_where_node_exporter_reads(lab: dict) -> None:
    _report(lab, "cert_report_threshold_days=1")
    certificate = lab["certificates"]["h1"]
    prom = (lab["root"] / "h1" / "textfile" / "vmmesh_certificates.prom").read_text()
    sample = (
        'vmmesh_certificate_expiry_timestamp_seconds{service="web",'
        f'identity="spiffe://test.mesh/ns/default/dc/dc1/svc/web",serial="{format(certificate.serial_number, "x")}"}} '
        f"{int(certificate.not_valid_after_utc.timestamp())}"
    )
    assert sample in prom.splitlines()
    assert not (lab["root"] / "h2" / "textfile").exists(), "no directory, no metric"


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        pytest.param(["cert_report_on_threshold=maybe"], 'cert_report_on_threshold ("maybe") fail or warn', id="mode"),
        pytest.param(
            ["cert_report_threshold_days=-1"], 'cert_report_threshold_days ("-1") must be a number', id="days"
        ),
    ],
)
def test_bad_report_variables(lab: dict, extra: list[str], expected: str) -> None:
    result = _report(lab, *extra)
    assert_failed_with(result, expected)
    assert "Read the certificates of the host" not in result.stdout, "checked before any host is read"
