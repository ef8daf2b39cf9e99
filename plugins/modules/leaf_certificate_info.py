#!/usr/bin/python
# Copyright (c) vmmesh.mesh contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# Imports follow the documentation, as Ansible modules are laid out; the code runs on the managed host's Python (3.8+).
# ruff: noqa: E402, UP017

from __future__ import annotations

DOCUMENTATION = r"""
module: leaf_certificate_info
short_description: Read the mesh leaf certificates of a host and tell which must be issued again
version_added: 0.1.0
author: vmmesh.mesh contributors (@vmmesh)
description:
  - Reads leaf certificate directories as M(vmmesh.mesh.leaf_certificate_files) writes them (C(cert.pem),
    C(key.pem), C(ca-bundle.pem)) and returns what they hold. Private key material is never returned.
  - For each directory listed in O(certificates), compares the certificate with what is wanted and returns the
    reasons to issue it again (missing files, another identity or subject, another key type, a key that does not
    match, a certificate not signed by the current signing CA, a certificate inside its renewal window or living
    longer than the lifetime allows).
  - With O(search), every other directory under it that holds a certificate or key is read too, without comparison
    (the expiry report). One call reads a whole host.
  - A listed certificate or key that exists but cannot be read fails the module with the path and what to do,
    unless O(force=true). A searched one that cannot be read is returned with an C(error).
  - Used by the C(vmmesh.mesh.certificates) role and the C(vmmesh.mesh.cert_report) playbook.
requirements:
  - cryptography >= 3.3 on the managed host (only when certificate files exist)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  certificates:
    description: The certificate directories to read and compare, each with what its certificate must hold.
    type: list
    elements: dict
    default: []
    suboptions:
      path:
        description: The certificate directory.
        type: path
        required: true
      common_name:
        description: Wanted subject common name. Omit to skip the comparison.
        type: str
      identity:
        description:
          - Wanted SPIFFE ID, the only URI subject alternative name. An empty string wants no URI SAN (Consul agents).
          - Omit to skip the comparison.
        type: str
      dns_names:
        description: Wanted DNS subject alternative names, in any order. Omit to skip the comparison.
        type: list
        elements: str
      ip_addresses:
        description: Wanted IP subject alternative names, in any order. Omit to skip the comparison.
        type: list
        elements: str
  search:
    description: Also read every other sub-directory of this directory that holds a C(cert.pem) or C(key.pem).
    type: path
  key_type:
    description: Wanted key type of the listed certificates' C(key.pem). Omit to skip the comparison.
    type: str
    choices: [ec-p256, ec-p384, rsa-2048, rsa-3072, rsa-4096]
  lifetime:
    description:
      - Lifetime the listed certificates are issued with, in weeks, days, hours, minutes and seconds (C(30d), C(1d12h),
        C(90m)).
      - A certificate that runs longer than this from now (5 minutes or 1% of the lifetime of slack for clocks) is
        issued again, so that shortening the lifetime takes effect at once.
      - Omit to check neither the lifetime nor the renewal window.
    type: str
  renew_before:
    description:
      - Renewal window, in the format of O(lifetime); a certificate that expires sooner than this is issued again.
      - Empty means a third of O(lifetime).
    type: str
    default: ""
  signer_certificate:
    description:
      - PEM certificate of the CA that signs new certificates. A listed certificate it did not sign is issued again
        (this is how C(playbooks/rotate_ca.yml) moves leaves to a new CA); every certificate read gets
        C(signed_by_signer).
      - Omit to skip the check.
    type: str
  force:
    description: Issue the listed certificates again whatever their files hold, even when they cannot be read.
    type: bool
    default: false
notes:
  - Times are compared with the managed host's clock.
seealso:
  - module: vmmesh.mesh.leaf_certificate_files
  - module: community.crypto.x509_certificate_info
"""

EXAMPLES = r"""
- name: Inspect the api service's certificate and everything else on the host
  vmmesh.mesh.leaf_certificate_info:
    certificates:
      - path: /etc/vmmesh/certs/api
        common_name: api
        identity: spiffe://shop.mesh/ns/default/dc/dc1/svc/api
        dns_names: [api.service.dc1.consul]
    search: /etc/vmmesh/certs
    key_type: ec-p256
    lifetime: 30d
    signer_certificate: "{{ lookup('ansible.builtin.file', '/path/to/ca.pem') }}"
  register: host_certificates

- name: Show why the api certificate would be issued again
  ansible.builtin.debug:
    msg: "{{ host_certificates.certificates[0].reasons }}"

- name: Read every certificate of the host, comparing nothing
  vmmesh.mesh.leaf_certificate_info:
    search: /etc/vmmesh/certs
  register: report
"""

RETURN = r"""
certificates:
  description: One entry per directory read; the listed ones first, in order, then the searched ones by path.
  returned: always
  type: list
  elements: dict
  contains:
    path:
      description: The directory.
      type: str
      sample: /etc/vmmesh/certs/api
    name:
      description: Its last component (the service, or C(consul)).
      type: str
      sample: api
    listed:
      description: Whether it was listed in O(certificates) (compared) rather than found by O(search).
      type: bool
    error:
      description: Why a searched directory could not be read; empty otherwise.
      type: str
    exists:
      description: Whether C(cert.pem) exists.
      type: bool
    certificate:
      description: What C(cert.pem) holds; empty when it is missing or unreadable.
      type: dict
      contains:
        common_name:
          description: Subject common name.
          type: str
          sample: api
        identity:
          description: The URI subject alternative name (SPIFFE ID); empty when there is none.
          type: str
          sample: spiffe://shop.mesh/ns/default/dc/dc1/svc/api
        uris:
          description: Every URI subject alternative name.
          type: list
          elements: str
        dns_names:
          description: DNS subject alternative names, sorted.
          type: list
          elements: str
        ip_addresses:
          description: IP subject alternative names, sorted.
          type: list
          elements: str
        issuer:
          description: Common name of the issuer (its whole name when it has no common name).
          type: str
          sample: vmmesh shop.mesh CA 1
        serial:
          description: Serial number in lowercase hexadecimal.
          type: str
          sample: 4f0c6d1e9a
        not_before:
          description: Start of validity, UTC, ISO 8601.
          type: str
          sample: "2025-01-01T12:00:00Z"
        not_after:
          description: End of validity, UTC, ISO 8601.
          type: str
          sample: "2025-01-31T12:00:00Z"
        not_after_timestamp:
          description: End of validity as a Unix timestamp.
          type: int
        expires_in_seconds:
          description: Seconds from now (the host's clock) to the end of validity; negative once expired.
          type: int
        key_type:
          description: Type of the certified public key (C(ec-p256), C(rsa-2048), ...).
          type: str
        extended_key_usage:
          description: Extended key usages, by name (C(serverAuth), C(clientAuth)).
          type: list
          elements: str
        signed_by_signer:
          description: Whether O(signer_certificate) signed the certificate; null when no signer was given.
          type: bool
    private_key:
      description: What C(key.pem) is (never its content).
      type: dict
      contains:
        exists:
          description: Whether C(key.pem) exists.
          type: bool
        key_type:
          description: Key type; empty when missing or unreadable.
          type: str
        matches_certificate:
          description: Whether the key belongs to the certificate's public key.
          type: bool
    trust_bundle:
      description: What C(ca-bundle.pem) holds.
      type: dict
      contains:
        exists:
          description: Whether C(ca-bundle.pem) exists.
          type: bool
        subjects:
          description: Common names of the CA certificates in it, in file order.
          type: list
          elements: str
        trusts_certificate:
          description: Whether one of them signed the certificate.
          type: bool
    reissue:
      description: Whether the certificate must be issued again (listed directories only).
      type: bool
    reasons:
      description: Why, one sentence each; empty when nothing needs to change.
      type: list
      elements: str
      sample: ["it expires in 9d 23h, inside the renewal window of 10d"]
"""

import datetime
import ipaddress
import os
import re
import time
from typing import Any

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible_collections.vmmesh.mesh.plugins.module_utils.leaf_certificates import (
    BUNDLE_FILE,
    CERT_FILE,
    CRYPTOGRAPHY_IMPORT_ERROR,
    HAS_CRYPTOGRAPHY,
    KEY_FILE,
    InvalidSignature,
    NameOID,
    ec,
    padding,
    rsa,
    serialization,
    x509,
)

KEY_TYPES = ("ec-p256", "ec-p384", "rsa-2048", "rsa-3072", "rsa-4096")
_DURATION = re.compile(r"^(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")
_UNIT_SECONDS = (604800, 86400, 3600, 60, 1)
_PEM_CERTIFICATE = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.DOTALL)
_PER_CERTIFICATE = ("common_name", "identity", "dns_names", "ip_addresses")
_EKU_NAMES = {"1.3.6.1.5.5.7.3.1": "serverAuth", "1.3.6.1.5.5.7.3.2": "clientAuth"}


class UnreadableFile(Exception):
    """A file exists but cannot be read or parsed; the message says which, why and what to do."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(
            f"{path} {problem}: remove the file (a new certificate and key are issued on the next run) or run with "
            "force: true (certificates_force_renewal: true in the vmmesh.mesh.certificates role)"
        )
        self.path = path


class MissingCryptography(Exception):
    """The files exist but the host lacks the Python cryptography library to read them."""


# ---------------------------------------------------------------------------------------------------------------------
# Durations
# ---------------------------------------------------------------------------------------------------------------------


def parse_duration(text: str) -> int:
    """Seconds in ``30d``, ``1d12h``, ``90m``...; ValueError when the text is not such a duration."""
    match = _DURATION.match(text or "")
    if not text or match is None:
        raise ValueError(f"{text!r} is not a duration such as 30d, 1d12h or 90m (units w, d, h, m, s)")
    seconds = sum(int(value) * _UNIT_SECONDS[index] for index, value in enumerate(match.groups()) if value)
    if seconds <= 0:
        raise ValueError(f"{text!r} is not a positive duration")
    return seconds


def format_duration(seconds: int) -> str:
    """``1d 2h``-style rendering, for messages (minutes are shown below a day, seconds below an hour)."""
    seconds = int(seconds)
    sign = "-" if seconds < 0 else ""
    seconds = abs(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        parts = [f"{days}d", f"{hours}h"] if hours else [f"{days}d"]
    elif hours:
        parts = [f"{hours}h", f"{minutes}m"] if minutes else [f"{hours}h"]
    else:
        parts = [f"{minutes}m", f"{secs}s"] if minutes else [f"{secs}s"]
    return sign + " ".join(parts)


# ---------------------------------------------------------------------------------------------------------------------
# Reading certificates and keys
# ---------------------------------------------------------------------------------------------------------------------


def _utc(value: datetime.datetime) -> datetime.datetime:
    return value if value.tzinfo else value.replace(tzinfo=datetime.timezone.utc)


def _not_before(certificate: Any) -> datetime.datetime:
    return _utc(getattr(certificate, "not_valid_before_utc", None) or certificate.not_valid_before)


def _not_after(certificate: Any) -> datetime.datetime:
    return _utc(getattr(certificate, "not_valid_after_utc", None) or certificate.not_valid_after)


def _iso(value: datetime.datetime) -> str:
    return value.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def key_type_of(key: Any) -> str:
    """``ec-p256``, ``rsa-2048``... for a public or private key; the algorithm's name for anything else."""
    if isinstance(key, (ec.EllipticCurvePublicKey, ec.EllipticCurvePrivateKey)):
        return {"secp256r1": "ec-p256", "secp384r1": "ec-p384", "secp521r1": "ec-p521"}.get(
            key.curve.name, f"ec-{key.curve.name}"
        )
    if isinstance(key, (rsa.RSAPublicKey, rsa.RSAPrivateKey)):
        return f"rsa-{key.key_size}"
    return type(key).__name__.lower().replace("publickey", "").replace("privatekey", "")


def _name_of(name: Any) -> str:
    common_names = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(common_names[0].value) if common_names else name.rfc4514_string()


def _public_bytes(key: Any) -> bytes:
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def signed_by(certificate: Any, issuer: Any) -> bool:
    """Whether ``issuer`` signed ``certificate`` (names and signature; works with cryptography < 40)."""
    if certificate.issuer != issuer.subject:
        return False
    public_key = issuer.public_key()
    try:
        if isinstance(public_key, ec.EllipticCurvePublicKey):
            public_key.verify(
                certificate.signature,
                certificate.tbs_certificate_bytes,
                ec.ECDSA(certificate.signature_hash_algorithm),
            )
        elif isinstance(public_key, rsa.RSAPublicKey):
            public_key.verify(
                certificate.signature,
                certificate.tbs_certificate_bytes,
                padding.PKCS1v15(),
                certificate.signature_hash_algorithm,
            )
        else:
            return False
    except InvalidSignature:
        return False
    return True


def _extension(certificate: Any, kind: Any) -> Any:
    try:
        return certificate.extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return None


def certificate_facts(certificate: Any, now: float, signer: Any = None) -> dict[str, Any]:
    """What a certificate holds, in plain types."""
    san = _extension(certificate, x509.SubjectAlternativeName)
    uris = san.get_values_for_type(x509.UniformResourceIdentifier) if san is not None else []
    dns_names = san.get_values_for_type(x509.DNSName) if san is not None else []
    ips = san.get_values_for_type(x509.IPAddress) if san is not None else []
    eku = _extension(certificate, x509.ExtendedKeyUsage)
    not_after = _not_after(certificate)
    return {
        "common_name": _name_of(certificate.subject)
        if certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        else "",
        "identity": uris[0] if len(uris) == 1 else "",
        "uris": list(uris),
        "dns_names": sorted(dns_names),
        "ip_addresses": sorted(str(ip) for ip in ips),
        "issuer": _name_of(certificate.issuer),
        "serial": format(certificate.serial_number, "x"),
        "not_before": _iso(_not_before(certificate)),
        "not_after": _iso(not_after),
        "not_after_timestamp": int(not_after.timestamp()),
        "expires_in_seconds": int(not_after.timestamp() - now),
        "key_type": key_type_of(certificate.public_key()),
        "extended_key_usage": sorted(_EKU_NAMES.get(oid.dotted_string, oid.dotted_string) for oid in eku or []),
        "signed_by_signer": None if signer is None else signed_by(certificate, signer),
    }


def load_certificates(data: bytes) -> list[Any]:
    """Every PEM certificate in ``data``, in order."""
    return [x509.load_pem_x509_certificate(block) for block in _PEM_CERTIFICATE.findall(data)]


def _read(path: str) -> bytes | None:
    """The file's bytes, None when it does not exist; UnreadableFile when it exists but cannot be read."""
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except FileNotFoundError:
        return None
    except OSError as error:
        raise UnreadableFile(path, f"cannot be read ({error.strerror})") from None


def read_certificate(path: str) -> Any:
    data = _read(path)
    if data is None:
        return None
    certificates = _PEM_CERTIFICATE.findall(data)
    if not certificates:
        raise UnreadableFile(path, "holds no PEM certificate")
    try:
        return x509.load_pem_x509_certificate(certificates[0])
    except ValueError as error:
        raise UnreadableFile(path, f"holds a certificate that cannot be parsed ({error})") from None


def read_private_key(path: str) -> Any:
    data = _read(path)
    if data is None:
        return None
    try:
        return serialization.load_pem_private_key(data, password=None)
    except (TypeError, ValueError) as error:
        # TypeError: the key is encrypted. ValueError: not a PEM private key. The error never quotes the key.
        raise UnreadableFile(path, f"is not an unencrypted PEM private key ({type(error).__name__})") from None


# ---------------------------------------------------------------------------------------------------------------------
# The decision
# ---------------------------------------------------------------------------------------------------------------------


def _normalised_ips(values: list[str]) -> list[str]:
    return sorted(str(ipaddress.ip_address(value)) for value in values)


def _subject_reasons(facts: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
    reasons = []
    if wanted.get("common_name") is not None and facts["common_name"] != wanted["common_name"]:
        reasons.append(f"its common name is {facts['common_name']!r}, not {wanted['common_name']!r}")
    if wanted.get("identity") is not None:
        expected = [wanted["identity"]] if wanted["identity"] else []
        if facts["uris"] != expected:
            reasons.append(f"its identity (URI SAN) is {facts['uris'] or 'none'}, not {expected or 'none'}")
    if wanted.get("dns_names") is not None and facts["dns_names"] != sorted(set(wanted["dns_names"])):
        reasons.append(f"its DNS names are {facts['dns_names']}, not {sorted(set(wanted['dns_names']))}")
    if wanted.get("ip_addresses") is not None and facts["ip_addresses"] != _normalised_ips(wanted["ip_addresses"]):
        reasons.append(f"its IP addresses are {facts['ip_addresses']}, not {_normalised_ips(wanted['ip_addresses'])}")
    if wanted.get("common_name") is not None and not {"serverAuth", "clientAuth"} <= set(facts["extended_key_usage"]):
        reasons.append("it is not valid for both serverAuth and clientAuth")
    return reasons


def _time_reasons(facts: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
    if not wanted.get("lifetime"):
        return []
    lifetime = parse_duration(wanted["lifetime"])
    window = parse_duration(wanted["renew_before"]) if wanted.get("renew_before") else lifetime // 3
    remaining = facts["expires_in_seconds"]
    slack = max(300, lifetime // 100)
    if remaining <= 0:
        return [f"it expired {format_duration(-remaining)} ago"]
    if remaining <= window:
        return [f"it expires in {format_duration(remaining)}, inside the renewal window of {format_duration(window)}"]
    if remaining > lifetime + slack:
        return [f"it runs {format_duration(remaining)} more, longer than the lifetime of {format_duration(lifetime)}"]
    return []


def reissue_reasons(
    facts: dict[str, Any] | None, key: dict[str, Any], wanted: dict[str, Any], force: bool = False
) -> list[str]:
    """Why the certificate must be issued again; empty when it is fine as it is."""
    if force:
        return ["a new certificate was requested (force)"]
    if facts is None:
        return ["there is no certificate yet"]
    reasons = []
    if not key["exists"]:
        reasons.append("its private key is missing")
    elif not key["matches_certificate"]:
        reasons.append("its private key does not belong to the certificate")
    if wanted.get("key_type") and key["exists"] and key["key_type"] != wanted["key_type"]:
        reasons.append(f"its key is {key['key_type']}, not {wanted['key_type']}")
    if facts["signed_by_signer"] is False:
        reasons.append(f"it was issued by {facts['issuer']!r}, not by the current signing CA")
    return reasons + _subject_reasons(facts, wanted) + _time_reasons(facts, wanted)


# ---------------------------------------------------------------------------------------------------------------------
# The module
# ---------------------------------------------------------------------------------------------------------------------


def inspect_directory(path: str, wanted: dict[str, Any], signer: Any, force: bool, now: float) -> dict[str, Any]:
    """What directory ``path`` holds and, when ``wanted`` asks for anything, why it must be issued again.

    UnreadableFile when a file cannot be read (unless ``force``).
    """
    cert_path, key_path, bundle_path = (os.path.join(path, name) for name in (CERT_FILE, KEY_FILE, BUNDLE_FILE))
    present = [name for name in (cert_path, key_path, bundle_path) if os.path.lexists(name)]
    result: dict[str, Any] = {
        "path": path,
        "name": os.path.basename(path.rstrip("/")),
        "error": "",
        "exists": os.path.lexists(cert_path),
        "certificate": {},
        "private_key": {"exists": os.path.lexists(key_path), "key_type": "", "matches_certificate": False},
        "trust_bundle": {"exists": os.path.lexists(bundle_path), "subjects": [], "trusts_certificate": False},
    }
    if present and not HAS_CRYPTOGRAPHY:
        raise MissingCryptography()
    certificate = _unless_forced(read_certificate, cert_path, force) if present else None
    key = _unless_forced(read_private_key, key_path, force) if present else None
    facts = certificate_facts(certificate, now, signer) if certificate is not None else None
    if facts is not None:
        result["certificate"] = facts
    if key is not None:
        result["private_key"]["key_type"] = key_type_of(key)
        result["private_key"]["matches_certificate"] = certificate is not None and _public_bytes(
            key.public_key()
        ) == _public_bytes(certificate.public_key())
    bundle = _read_bundle(bundle_path) if HAS_CRYPTOGRAPHY and result["trust_bundle"]["exists"] else []
    result["trust_bundle"]["subjects"] = [_name_of(ca.subject) for ca in bundle]
    result["trust_bundle"]["trusts_certificate"] = certificate is not None and any(
        signed_by(certificate, ca) for ca in bundle
    )
    reasons = reissue_reasons(facts, result["private_key"], wanted, force) if _wants_anything(wanted, force) else []
    result["reissue"] = bool(reasons)
    result["reasons"] = reasons
    return result


def searched_directories(search: str | None, listed: list[str]) -> list[str]:
    """Sub-directories of ``search`` that hold a certificate or key and are not listed, sorted."""
    if not search or not os.path.isdir(search):
        return []
    known = {os.path.normpath(path) for path in listed}
    found = []
    for entry in sorted(os.listdir(search)):
        path = os.path.join(search, entry)
        if os.path.normpath(path) in known or not os.path.isdir(path):
            continue
        if any(os.path.lexists(os.path.join(path, name)) for name in (CERT_FILE, KEY_FILE)):
            found.append(path)
    return found


def load_signer(signer_pem: str | None) -> Any:
    if not signer_pem:
        return None
    if not HAS_CRYPTOGRAPHY:
        raise MissingCryptography()
    signers = load_certificates(signer_pem.encode())
    if not signers:
        raise ValueError("signer_certificate holds no PEM certificate")
    return signers[0]


def inspect_host(
    certificates: list[dict[str, Any]], search: str | None, common: dict[str, Any], force: bool, now: float
) -> list[dict[str, Any]]:
    """Every listed directory (compared), then every other one under ``search`` (read only)."""
    signer = load_signer(common.get("signer_certificate"))
    wanted_common = {key: common.get(key) for key in ("key_type", "lifetime", "renew_before")}
    results = []
    for item in certificates:
        wanted = dict(wanted_common, **{key: item.get(key) for key in _PER_CERTIFICATE})
        result = inspect_directory(item["path"], wanted, signer, force, now)
        result["listed"] = True
        results.append(result)
    for path in searched_directories(search, [item["path"] for item in certificates]):
        try:
            result = inspect_directory(path, {}, signer, False, now)
        except UnreadableFile as error:
            result = {"path": path, "name": os.path.basename(path), "error": str(error), "exists": False}
            result.update({"certificate": {}, "private_key": {}, "trust_bundle": {}, "reissue": False, "reasons": []})
        result["listed"] = False
        results.append(result)
    return results


def _unless_forced(reader: Any, path: str, force: bool) -> Any:
    """``reader(path)``; with ``force`` an unreadable file counts as missing (it is about to be replaced)."""
    try:
        return reader(path)
    except UnreadableFile:
        if force:
            return None
        raise


def _read_bundle(path: str) -> list[Any]:
    try:
        data = _read(path)
        return load_certificates(data or b"")
    except (UnreadableFile, ValueError):
        # The bundle is rewritten by every run of the role; an unreadable one is simply replaced.
        return []


def _wants_anything(wanted: dict[str, Any], force: bool) -> bool:
    return force or any(value is not None and value != "" for key, value in wanted.items() if key != "renew_before")


def _check_durations(module: AnsibleModule) -> None:
    params = module.params
    for name in ("lifetime", "renew_before"):
        if params[name]:
            try:
                parse_duration(params[name])
            except ValueError as error:
                module.fail_json(msg=f"{name}: {error}")
    if (
        params["lifetime"]
        and params["renew_before"]
        and parse_duration(params["renew_before"]) >= parse_duration(params["lifetime"])
    ):
        module.fail_json(
            msg=f"renew_before ({params['renew_before']}) must be shorter than lifetime ({params['lifetime']}), "
            "or every run would issue again"
        )


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "certificates": {
                "type": "list",
                "elements": "dict",
                "default": [],
                "options": {
                    "path": {"type": "path", "required": True},
                    "common_name": {"type": "str"},
                    "identity": {"type": "str"},
                    "dns_names": {"type": "list", "elements": "str"},
                    "ip_addresses": {"type": "list", "elements": "str"},
                },
            },
            "search": {"type": "path"},
            "key_type": {"type": "str", "choices": list(KEY_TYPES)},
            "lifetime": {"type": "str"},
            "renew_before": {"type": "str", "default": ""},
            "signer_certificate": {"type": "str"},
            "force": {"type": "bool", "default": False},
        },
        supports_check_mode=True,
    )
    params = module.params
    _check_durations(module)
    for item in params["certificates"]:
        if item["ip_addresses"] is not None:
            try:
                _normalised_ips(item["ip_addresses"])
            except ValueError as error:
                module.fail_json(msg=f"{item['path']}: ip_addresses: {error}")
    try:
        results = inspect_host(params["certificates"], params["search"], params, params["force"], time.time())
    except MissingCryptography:
        module.fail_json(msg=missing_required_lib("cryptography"), exception=CRYPTOGRAPHY_IMPORT_ERROR)
    except (UnreadableFile, ValueError) as error:
        module.fail_json(msg=str(error))
    module.exit_json(changed=False, certificates=results)


if __name__ == "__main__":
    main()
