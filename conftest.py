"""Make the checkout importable as ``ansible_collections.vmmesh.mesh``.

Unit tests import the collection the way Ansible does. A checkout is not laid
out as ``ansible_collections/vmmesh/mesh``, so a link under ``.cache`` gives it
that shape (the Makefile makes the same link for ansible-playbook).
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

_ROOT = Path(__file__).resolve().parent
_COLLECTIONS = _ROOT / ".cache" / "collections"
_LINK = _COLLECTIONS / "ansible_collections" / "vmmesh" / "mesh"

if not _LINK.exists():
    _LINK.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.symlink(_ROOT, _LINK)

if str(_COLLECTIONS) not in sys.path:
    sys.path.insert(0, str(_COLLECTIONS))
