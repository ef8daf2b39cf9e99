"""leaf_certificate_info: what a leaf directory holds, and every reason to issue it again."""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

import pytest
from ansible_collections.vmmesh.mesh.plugins.modules import leaf_certificate_info as module
from cryptography.x509.oid import ExtendedKeyUsageOID

API = "spiffe://shop.mesh/ns/default/dc/dc1/svc/api"
WANTED = {
    "common_name": "api",
    "identity": API,
    "dns_names": ["api.service.dc1.consul"],
    "ip_addresses": [],
}


def _inspect(run: Any, directory: Path, ca: Any = None, **args: Any) -> dict:
    params: dict[str, Any] = {
        "certificates": [{"path": str(directory), **WANTED}],
        "key_type": "ec-p256",
        "lifetime": "30d",
    }
    if ca is not None:
        params["signer_certificate"] = ca.pem
    params.update(args)
    return run(module.main, **params)


def _reasons(run: Any, directory: Path, ca: Any, **args: Any) -> list[str]:
    result = _inspect(run, directory, ca, **args)
    assert not result.get("failed"), result
    return result["certificates"][0]["reasons"]


# --- durations ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"), [("30d", 2592000), ("1d12h", 129600), ("90m", 5400), ("1w", 604800), ("59m55s", 3595)]
)
def test_parse_duration(text: str, seconds: int) -> None:
    assert module.parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "30", "1y", "d", "0s", "12h30d"])
def test_parse_duration_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        module.parse_duration(text)


@pytest.mark.parametrize(
    ("seconds", "text"), [(864000, "10d"), (90000, "1d 1h"), (3600, "1h"), (3660, "1h 1m"), (65, "1m 5s"), (-5, "-5s")]
)
def test_format_duration(seconds: int, text: str) -> None:
    assert module.format_duration(seconds) == text


# --- reading ------------------------------------------------------------------------------------------------------


def test_a_good_certificate_needs_nothing(tmp_path: Path, run: Any, pki: Any, ca: Any) -> None:
    pki.write_leaf(tmp_path / "api", ca)
    result = _inspect(run, tmp_path / "api", ca)
    assert result["changed"] is False
    entry = result["certificates"][0]
    assert entry["reissue"] is False and entry["reasons"] == []
    assert entry["name"] == "api" and entry["listed"] is True and entry["exists"] is True
    facts = entry["certificate"]
    assert facts["identity"] == API and facts["uris"] == [API]
    assert facts["dns_names"] == ["api.service.dc1.consul"]
    assert facts["issuer"] == "vmmesh shop.mesh CA 1"
    assert facts["key_type"] == "ec-p256"
    assert facts["extended_key_usage"] == ["clientAuth", "serverAuth"]
    assert facts["signed_by_signer"] is True
    assert 29 * 86400 < facts["expires_in_seconds"] <= 30 * 86400
    assert facts["not_after"].endswith("Z") and len(facts["serial"]) > 8
    assert entry["private_key"] == {"exists": True, "key_type": "ec-p256", "matches_certificate": True}
    assert entry["trust_bundle"] == {"exists": True, "subjects": ["vmmesh shop.mesh CA 1"], "trusts_certificate": True}
    assert "PRIVATE KEY" not in str(result)


def test_nothing_there_yet(tmp_path: Path, run: Any, pki: Any, ca: Any) -> None:
    entry = _inspect(run, tmp_path / "missing", ca)["certificates"][0]
    assert entry["exists"] is False and entry["reasons"] == ["there is no certificate yet"]


@pytest.mark.parametrize(
    ("issue", "expected"),
    [
        pytest.param({"common_name": "web"}, "its common name is 'web', not 'api'", id="common-name"),
        pytest.param({"uris": ("spiffe://other/x",)}, "its identity (URI SAN) is ['spiffe://other/x']", id="identity"),
        pytest.param({"uris": ()}, "its identity (URI SAN) is none", id="no-identity"),
        pytest.param({"dns_names": ("api.local",)}, "its DNS names are ['api.local']", id="dns"),
        pytest.param(
            {"usages": (ExtendedKeyUsageOID.SERVER_AUTH,)}, "not valid for both serverAuth and clientAuth", id="eku"
        ),
        pytest.param({"lifetime": datetime.timedelta(days=5)}, "inside the renewal window of 10d", id="renewal-window"),
        pytest.param({"lifetime": datetime.timedelta(days=60)}, "longer than the lifetime of 30d", id="lifetime"),
        pytest.param({"lifetime": datetime.timedelta(seconds=-60)}, "it expired", id="expired"),
    ],
)
def test_reasons_to_issue_again(tmp_path: Path, run: Any, pki: Any, ca: Any, issue: dict, expected: str) -> None:
    pki.write_leaf(tmp_path / "api", ca, **issue)
    reasons = _reasons(run, tmp_path / "api", ca)
    assert any(expected in reason for reason in reasons), reasons


def test_renew_before_sets_the_window(tmp_path: Path, run: Any, pki: Any, ca: Any) -> None:
    pki.write_leaf(tmp_path / "api", ca, lifetime=datetime.timedelta(hours=1))
    assert _reasons(run, tmp_path / "api", ca, lifetime="1h") == []
    reasons = _reasons(run, tmp_path / "api", ca, lifetime="1h", renew_before="59m59s")
    assert reasons and "inside the renewal window of 59m 59s" in reasons[0]


def test_other_signer_key_type_and_key(tmp_path: Path, run: Any, pki: Any, ca: Any, next_ca: Any) -> None:
    pki.write_leaf(tmp_path / "api", ca)
    assert _reasons(run, tmp_path / "api", next_ca) == [
        "it was issued by 'vmmesh shop.mesh CA 1', not by the current signing CA"
    ]
    assert _reasons(run, tmp_path / "api", ca, key_type="ec-p384") == ["its key is ec-p256, not ec-p384"]
    (tmp_path / "api" / "key.pem").write_bytes(pki.private_key_pem(pki.new_key()))
    assert _reasons(run, tmp_path / "api", ca) == ["its private key does not belong to the certificate"]
    (tmp_path / "api" / "key.pem").unlink()
    assert _reasons(run, tmp_path / "api", ca) == ["its private key is missing"]


def test_rsa_key_type(tmp_path: Path, run: Any, pki: Any, ca: Any) -> None:
    pki.write_leaf(tmp_path / "api", ca, key=pki.new_key("rsa-2048"))
    entry = _inspect(run, tmp_path / "api", ca, key_type="rsa-2048")["certificates"][0]
    assert entry["reasons"] == [] and entry["certificate"]["key_type"] == "rsa-2048"


def test_force_issues_again_even_over_unreadable_files(tmp_path: Path, run: Any, pki: Any, ca: Any) -> None:
    pki.write_leaf(tmp_path / "api", ca)
    (tmp_path / "api" / "cert.pem").write_text("garbage")
    assert _reasons(run, tmp_path / "api", ca, force=True) == ["a new certificate was requested (force)"]


@pytest.mark.parametrize(
    ("file_name", "content", "expected"),
    [
        pytest.param("cert.pem", "not a certificate", "cert.pem holds no PEM certificate", id="cert-garbage"),
        pytest.param(
            "cert.pem",
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
            "cert.pem holds a certificate that cannot be parsed",
            id="cert-broken",
        ),
        pytest.param("key.pem", "not a key", "key.pem is not an unencrypted PEM private key", id="key-garbage"),
    ],
)
def test_unreadable_files_stop_with_the_path_and_the_fix(
    tmp_path: Path, run: Any, pki: Any, ca: Any, file_name: str, content: str, expected: str
) -> None:
    pki.write_leaf(tmp_path / "api", ca)
    (tmp_path / "api" / file_name).write_text(content)
    result = _inspect(run, tmp_path / "api", ca)
    assert result["failed"] is True
    assert f"{tmp_path}/api/{expected}" in result["msg"]
    assert "remove the file" in result["msg"] and "certificates_force_renewal: true" in result["msg"]


def test_a_file_that_cannot_be_read(tmp_path: Path, run: Any, pki: Any, ca: Any) -> None:
    """Any OSError on reading is reported with the path; a directory in the file's place fails even for root."""
    pki.write_leaf(tmp_path / "api", ca)
    (tmp_path / "api" / "cert.pem").unlink()
    (tmp_path / "api" / "cert.pem").mkdir()
    assert "cert.pem cannot be read (Is a directory)" in _inspect(run, tmp_path / "api", ca)["msg"]


def test_search_reads_the_other_directories(tmp_path: Path, run: Any, pki: Any, ca: Any) -> None:
    pki.write_leaf(tmp_path / "api", ca)
    pki.write_leaf(tmp_path / "consul", ca, common_name="server.dc1.consul", uris=(), dns_names=("server.dc1.consul",))
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "cert.pem").write_text("garbage")
    (tmp_path / "empty").mkdir()
    result = _inspect(run, tmp_path / "api", ca, search=str(tmp_path))
    entries = {entry["name"]: entry for entry in result["certificates"]}
    assert list(entries) == ["api", "broken", "consul"], "listed first, then the others by path; empty ones skipped"
    assert entries["consul"]["listed"] is False and entries["consul"]["reasons"] == []
    assert entries["consul"]["certificate"]["identity"] == ""
    assert "holds no PEM certificate" in entries["broken"]["error"]


def test_report_without_anything_wanted(tmp_path: Path, run: Any, pki: Any, ca: Any) -> None:
    pki.write_leaf(tmp_path / "api", ca, lifetime=datetime.timedelta(hours=1))
    result = run(module.main, search=str(tmp_path))
    assert result["certificates"][0]["reissue"] is False
    assert result["certificates"][0]["certificate"]["signed_by_signer"] is None
    assert run(module.main, search=str(tmp_path / "nowhere"))["certificates"] == []


def test_trust_bundle_that_does_not_trust_the_certificate(
    tmp_path: Path, run: Any, pki: Any, ca: Any, next_ca: Any
) -> None:
    pki.write_leaf(tmp_path / "api", ca, bundle=next_ca.pem + ca.pem)
    entry = _inspect(run, tmp_path / "api", ca)["certificates"][0]
    assert entry["trust_bundle"]["subjects"] == ["vmmesh shop.mesh CA 2", "vmmesh shop.mesh CA 1"]
    assert entry["trust_bundle"]["trusts_certificate"] is True
    (tmp_path / "api" / "ca-bundle.pem").write_text(next_ca.pem)
    assert _inspect(run, tmp_path / "api", ca)["certificates"][0]["trust_bundle"]["trusts_certificate"] is False


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        pytest.param({"lifetime": "30 days"}, "lifetime: '30 days' is not a duration", id="lifetime"),
        pytest.param({"renew_before": "x"}, "renew_before: 'x' is not a duration", id="renew"),
        pytest.param({"renew_before": "30d"}, "renew_before (30d) must be shorter than lifetime (30d)", id="window"),
        pytest.param({"signer_certificate": "nope"}, "signer_certificate holds no PEM certificate", id="signer"),
    ],
)
def test_bad_arguments(tmp_path: Path, run: Any, pki: Any, args: dict, expected: str) -> None:
    result = _inspect(run, tmp_path / "api", **args)
    assert result["failed"] is True and expected in result["msg"]


def test_bad_ip_address(tmp_path: Path, run: Any, pki: Any) -> None:
    result = run(module.main, certificates=[{"path": str(tmp_path), "ip_addresses": ["1.2.3.400"]}])
    assert result["failed"] is True and "ip_addresses" in result["msg"]


def test_check_mode_reads_the_same(tmp_path: Path, run: Any, pki: Any, ca: Any) -> None:
    pki.write_leaf(tmp_path / "api", ca)
    result = _inspect(run, tmp_path / "api", ca, _ansible_check_mode=True)
    assert result["changed"] is False and result["certificates"][0]["reasons"] == []
