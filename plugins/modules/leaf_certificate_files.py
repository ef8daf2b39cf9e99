#!/usr/bin/python
# Copyright (c) vmmesh.mesh contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# Imports follow the documentation, as Ansible modules are laid out; the code runs on the managed host's Python (3.8+).
# ruff: noqa: E402

from __future__ import annotations

DOCUMENTATION = r"""
module: leaf_certificate_files
short_description: Install a mesh leaf certificate, its key, the trust bundle and the HAProxy bundle atomically
version_added: 0.1.0
author: vmmesh.mesh contributors (@vmmesh)
description:
  - Keeps one leaf certificate directory in its wanted state. The directory holds
    C(cert.pem) (mode 0644), C(key.pem) (0600), C(ca-bundle.pem) (0644) and, for HAProxy, C(haproxy.pem)
    (certificate then key, 0600), all owned by O(owner) and O(group).
  - A new certificate is installed together with the private key staged for it in the parent directory as
    C(.<name>.key.pem.next) (generated on the host, for example by M(community.crypto.openssl_privatekey)); the
    module checks that the two belong together, then renames the key and the certificate into place.
  - Every file is replaced by a rename, never edited in place, so a reader (Envoy's file-based SDS watches the
    directory for renames) sees either the old or the new file.
  - Without a new certificate, a staged key left by an interrupted run is removed.
  - The directory itself is created when missing and kept owned by root and O(group), mode 0750.
  - Private key material is never returned, not even in the diff.
requirements:
  - cryptography >= 3.3 on the managed host, when O(certificate) is given
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
  platform:
    platforms: posix
options:
  path:
    description: The certificate directory, for example C(/etc/vmmesh/certs/web); its parent must exist.
    type: path
    required: true
  certificate:
    description:
      - A new certificate (PEM) to install with the staged key C(.<name>.key.pem.next) of the parent directory.
      - Omit to keep the installed certificate and key.
    type: str
  trust_bundle:
    description:
      - The CA certificates (PEM, one per element; an element may also hold several) that C(ca-bundle.pem) must
        hold, in this order. Omit to leave the file as it is.
    type: list
    elements: str
  combined_pem:
    description:
      - Keep C(haproxy.pem), the certificate followed by its key, as HAProxy's C(crt) reads it.
      - When false, an existing C(haproxy.pem) is removed.
    type: bool
    default: false
  owner:
    description: Owner of the files (the sidecar's user).
    type: str
    default: root
  group:
    description: Group of the files.
    type: str
    default: root
seealso:
  - module: vmmesh.mesh.leaf_certificate_info
  - module: community.crypto.openssl_privatekey
  - module: community.crypto.x509_certificate_pipe
"""

EXAMPLES = r"""
- name: Stage a new key on the host
  community.crypto.openssl_privatekey:
    path: /etc/vmmesh/certs/.web.key.pem.next
    type: ECC
    curve: secp256r1
    mode: "0600"

# ... make a CSR from it on the host, sign it on the controller ...

- name: Install the certificate with the staged key, and the trust bundle
  vmmesh.mesh.leaf_certificate_files:
    path: /etc/vmmesh/certs/web
    certificate: "{{ signed.certificate }}"
    trust_bundle:
      - "{{ lookup('ansible.builtin.file', '/path/to/ca.pem') }}"
    combined_pem: true
    owner: haproxy
    group: haproxy

- name: Only refresh the trust bundle (CA rotation)
  vmmesh.mesh.leaf_certificate_files:
    path: /etc/vmmesh/certs/api
    trust_bundle: "{{ [old_ca_pem, new_ca_pem] }}"
"""

RETURN = r"""
changed_files:
  description:
    - Names of the files that were (or in check mode would be) written, removed or given new attributes;
      C(.) stands for the directory itself, C(.<name>.key.pem.next) for the staged key.
  returned: always
  type: list
  elements: str
  sample: [cert.pem, key.pem, haproxy.pem]
certificate_installed:
  description: Whether a new certificate and key were put in place.
  returned: always
  type: bool
"""

import grp
import hashlib
import os
import pwd
import stat
import tempfile
import traceback
from dataclasses import dataclass, field
from typing import Any

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible_collections.vmmesh.mesh.plugins.module_utils.leaf_certificates import (
    BUNDLE_FILE,
    CERT_FILE,
    COMBINED_FILE,
    HAS_CRYPTOGRAPHY,
    KEY_FILE,
    serialization,
    x509,
)

STAGED_KEY = "staged key"  # its file is staged_key_path(path)
DIRECTORY_MODE = 0o750
PUBLIC_MODE = 0o644
SECRET_MODE = 0o600
SECRET_FILES = (KEY_FILE, COMBINED_FILE)


class LeafFilesError(Exception):
    """The wanted state cannot be reached; the message says why and what to do."""


@dataclass
class Owner:
    uid: int
    gid: int
    label: str


@dataclass
class Plan:
    """What the directory must become: file name to content (None: absent), and what is done on the way."""

    contents: dict[str, bytes | None]
    install_certificate: bool = False
    remove_staged_key: bool = False
    changed: list[str] = field(default_factory=list)


def _pem(text: str) -> bytes:
    data = text.strip().encode()
    return data + b"\n" if data else b""


def bundle_of(certificates: list[str]) -> bytes:
    """The trust bundle file: each PEM block on its own lines, one newline at the end."""
    return b"".join(_pem(text) for text in certificates)


def _read(path: str) -> bytes | None:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except FileNotFoundError:
        return None
    except OSError as error:
        raise LeafFilesError(f"{path} cannot be read ({error.strerror}); fix its permissions or remove it") from None


def resolve_owner(owner: str, group: str) -> Owner:
    try:
        uid = pwd.getpwnam(owner).pw_uid
    except KeyError:
        raise LeafFilesError(
            f"user {owner!r} does not exist on this host: create it first (the sidecar role does) "
            "or set certificates_owner / certificates_sidecar_owners to an existing user"
        ) from None
    try:
        gid = grp.getgrnam(group).gr_gid
    except KeyError:
        raise LeafFilesError(
            f"group {group!r} does not exist on this host: create it first (the sidecar role does) "
            "or set certificates_group / certificates_sidecar_owners to an existing group"
        ) from None
    return Owner(uid, gid, f"{owner}:{group}")


def check_pair(certificate_pem: bytes, key_pem: bytes, path: str) -> None:
    """The certificate must certify the staged key; LeafFilesError otherwise."""
    if not HAS_CRYPTOGRAPHY:
        raise LeafFilesError(missing_required_lib("cryptography"))
    try:
        certificate = x509.load_pem_x509_certificate(certificate_pem)
    except ValueError as error:
        raise LeafFilesError(f"certificate: not a PEM certificate ({error})") from None
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (TypeError, ValueError) as error:
        raise LeafFilesError(
            f"{path} is not an unencrypted PEM private key ({type(error).__name__}); remove it and run again"
        ) from None
    spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    if certificate.public_key().public_bytes(*spki) != key.public_key().public_bytes(*spki):
        raise LeafFilesError(
            f"the certificate does not belong to the staged key {path}; make the CSR from that key and sign it again"
        )


def staged_key_path(path: str) -> str:
    """Where the new key of directory ``path`` is staged: ``.<name>.key.pem.next`` in its parent."""
    normal = os.path.normpath(path)
    return os.path.join(os.path.dirname(normal), f".{os.path.basename(normal)}.key.pem.next")


def plan_directory(
    path: str, certificate: str | None, trust_bundle: list[str] | None, combined_pem: bool
) -> tuple[Plan, dict[str, bytes | None]]:
    """Read what the directory holds and what it must hold; nothing is written here."""
    names = (CERT_FILE, KEY_FILE, BUNDLE_FILE, COMBINED_FILE)
    current = {name: _read(os.path.join(path, name)) for name in names}
    staged_path = staged_key_path(path)
    current[STAGED_KEY] = _read(staged_path)
    wanted: dict[str, bytes | None] = {
        CERT_FILE: current[CERT_FILE],
        KEY_FILE: current[KEY_FILE],
        BUNDLE_FILE: current[BUNDLE_FILE] if trust_bundle is None else bundle_of(trust_bundle),
    }
    plan = Plan(contents=wanted)
    if certificate is not None:
        staged = current[STAGED_KEY]
        if staged is None:
            raise LeafFilesError(
                f"there is no staged key {staged_path} to install the certificate with; "
                "generate the key on the host first (community.crypto.openssl_privatekey)"
            )
        check_pair(_pem(certificate), staged, staged_path)
        wanted[CERT_FILE] = _pem(certificate)
        wanted[KEY_FILE] = staged
        plan.install_certificate = wanted[CERT_FILE] != current[CERT_FILE] or staged != current[KEY_FILE]
    elif current[STAGED_KEY] is not None:
        plan.remove_staged_key = True
        plan.changed.append(os.path.basename(staged_path))
    both = wanted[CERT_FILE] is not None and wanted[KEY_FILE] is not None
    wanted[COMBINED_FILE] = (wanted[CERT_FILE] or b"") + (wanted[KEY_FILE] or b"") if combined_pem and both else None
    if plan.install_certificate:
        plan.changed += [CERT_FILE, KEY_FILE]
    for name in (BUNDLE_FILE, COMBINED_FILE):
        if wanted[name] != current[name] and not (name == BUNDLE_FILE and trust_bundle is None):
            plan.changed.append(name)
    return plan, current


def _mode_of(name: str) -> int:
    return SECRET_MODE if name in SECRET_FILES else PUBLIC_MODE


def attribute_changes(path: str, contents: dict[str, bytes | None], owner: Owner, skip: list[str]) -> list[str]:
    """Files that exist and stay but have another owner, group or mode than wanted."""
    changes = []
    for name, content in contents.items():
        full = os.path.join(path, name)
        if content is None or name in skip or not os.path.exists(full):
            continue
        info = os.stat(full)
        if (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) != (owner.uid, owner.gid, _mode_of(name)):
            changes.append(name)
    return changes


def create_directory(path: str, owner: Owner) -> None:
    """The certificate directory, root-owned in the files' group, mode 0750; its parent must exist."""
    if not os.path.isdir(os.path.dirname(os.path.normpath(path))):
        raise LeafFilesError(f"{os.path.dirname(os.path.normpath(path))} does not exist; create it first")
    os.mkdir(path, 0o700)
    os.chown(path, 0, owner.gid)
    os.chmod(path, DIRECTORY_MODE)


def directory_changes(path: str, owner: Owner) -> list[str]:
    """``["."]`` when the directory is not root-owned, in the files' group, mode 0750."""
    info = os.stat(path)
    if (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) != (0, owner.gid, DIRECTORY_MODE):
        return ["."]
    return []


def _fsync_directory(path: str) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def stage_file(path: str, name: str, content: bytes, owner: Owner) -> str:
    """Write ``content`` to a temporary file in ``path`` with the final owner and mode of ``name``; its path."""
    descriptor, temporary = tempfile.mkstemp(dir=path, prefix=f".{name}.")
    try:
        os.fchmod(descriptor, _mode_of(name))
        os.fchown(descriptor, owner.uid, owner.gid)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        os.unlink(temporary)
        raise
    return temporary


def write_atomically(path: str, name: str, content: bytes, owner: Owner) -> None:
    """Replace ``name`` in ``path`` by a rename: readers see the old file or the new one, never a part."""
    os.rename(stage_file(path, name, content, owner), os.path.join(path, name))


def apply_plan(path: str, plan: Plan, owner: Owner, attributes: list[str]) -> None:
    """Write the plan: trust bundle first, then key and certificate by renames, then the HAProxy bundle."""
    wanted = plan.contents
    if BUNDLE_FILE in plan.changed:
        write_atomically(path, BUNDLE_FILE, wanted[BUNDLE_FILE] or b"", owner)
    if plan.install_certificate:
        # Both files are ready before the first rename, so the two renames follow each other at once.
        staged = staged_key_path(path)
        os.chown(staged, owner.uid, owner.gid)
        os.chmod(staged, SECRET_MODE)
        certificate = stage_file(path, CERT_FILE, wanted[CERT_FILE] or b"", owner)
        os.rename(staged, os.path.join(path, KEY_FILE))
        os.rename(certificate, os.path.join(path, CERT_FILE))
    if plan.remove_staged_key:
        os.unlink(staged_key_path(path))
    if COMBINED_FILE in plan.changed:
        if wanted[COMBINED_FILE] is None:
            os.unlink(os.path.join(path, COMBINED_FILE))
        else:
            write_atomically(path, COMBINED_FILE, wanted[COMBINED_FILE], owner)
    for name in attributes:
        full = os.path.join(path, name)
        if name == ".":
            os.chown(full, 0, owner.gid)
            os.chmod(full, DIRECTORY_MODE)
            continue
        os.chown(full, owner.uid, owner.gid)
        os.chmod(full, _mode_of(name))
    _fsync_directory(path)


def _describe(name: str, content: bytes | None, new_key: bool = False) -> str:
    if content is None:
        return f"{name}: absent\n"
    if name in SECRET_FILES or name == STAGED_KEY:
        return f"{name}: {'a new private key' if new_key else 'private key'} (content not shown)\n"
    return f"{name}: sha256 {hashlib.sha256(content).hexdigest()}\n"


def diff_of(current: dict[str, bytes | None], plan: Plan) -> dict[str, str]:
    """Before and after, by file: digests of public files, never anything of a key."""
    names = sorted(set(plan.contents) | {STAGED_KEY})
    after = dict(plan.contents)
    after[STAGED_KEY] = None if plan.install_certificate or plan.remove_staged_key else current[STAGED_KEY]
    renewed = {KEY_FILE, COMBINED_FILE} if plan.install_certificate else set()
    return {
        "before": "".join(_describe(name, current[name]) for name in names),
        "after": "".join(_describe(name, after[name], name in renewed) for name in names),
    }


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "path", "required": True},
            "certificate": {"type": "str"},
            "trust_bundle": {"type": "list", "elements": "str"},
            "combined_pem": {"type": "bool", "default": False},
            "owner": {"type": "str", "default": "root"},
            "group": {"type": "str", "default": "root"},
        },
        supports_check_mode=True,
    )
    params = module.params
    path = params["path"]
    try:
        try:
            owner = resolve_owner(params["owner"], params["group"])
        except LeafFilesError as error:
            if not module.check_mode:
                raise
            # In check mode the role that creates the user may not have run for real.
            module.warn(f"{error}; a real run fails unless the user and group exist by then")
            module.exit_json(changed=True, changed_files=["."], certificate_installed=False)
        created = []
        if not os.path.isdir(path):
            created = ["."]
            if not module.check_mode:
                create_directory(path, owner)
        plan, current = plan_directory(path, params["certificate"], params["trust_bundle"], params["combined_pem"])
        attributes = []
        if os.path.isdir(path):
            attributes = attribute_changes(path, plan.contents, owner, plan.changed) + directory_changes(path, owner)
        changed_files = sorted(set(plan.changed + attributes + created))
        if changed_files and not module.check_mode:
            apply_plan(path, plan, owner, attributes)
    except LeafFilesError as error:
        module.fail_json(msg=str(error))
    except OSError as error:
        module.fail_json(
            msg=f"{path}: {error}; files already renamed into place stay, run again to finish",
            exception=traceback.format_exc(),
        )
    result: dict[str, Any] = {
        "changed": bool(changed_files),
        "changed_files": changed_files,
        "certificate_installed": plan.install_certificate,
    }
    if module._diff and changed_files:
        result["diff"] = diff_of(current, plan)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
