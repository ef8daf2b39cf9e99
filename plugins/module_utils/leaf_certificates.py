# Copyright (c) vmmesh.mesh contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The leaf certificate directory, shared by the modules that write and read it.

A directory per service (``mesh.paths.certs/<service>``) holds ``cert.pem``, ``key.pem``, ``ca-bundle.pem`` and, for
HAProxy, ``haproxy.pem`` (the certificate followed by its key). The Python ``cryptography`` library is imported here
once, guarded: modules check ``HAS_CRYPTOGRAPHY`` and report ``CRYPTOGRAPHY_IMPORT_ERROR`` when it is missing.
"""

from __future__ import annotations

import traceback

CERT_FILE = "cert.pem"
KEY_FILE = "key.pem"
BUNDLE_FILE = "ca-bundle.pem"
COMBINED_FILE = "haproxy.pem"

try:
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
    from cryptography.x509.oid import NameOID
except ImportError:
    HAS_CRYPTOGRAPHY = False
    CRYPTOGRAPHY_IMPORT_ERROR: str | None = traceback.format_exc()
    x509 = serialization = ec = padding = rsa = NameOID = None  # type: ignore[assignment]
    InvalidSignature = Exception  # type: ignore[assignment,misc]
else:
    HAS_CRYPTOGRAPHY = True
    CRYPTOGRAPHY_IMPORT_ERROR = None

__all__ = [
    "BUNDLE_FILE",
    "CERT_FILE",
    "COMBINED_FILE",
    "CRYPTOGRAPHY_IMPORT_ERROR",
    "HAS_CRYPTOGRAPHY",
    "KEY_FILE",
    "InvalidSignature",
    "NameOID",
    "ec",
    "padding",
    "rsa",
    "serialization",
    "x509",
]
