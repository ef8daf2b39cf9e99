#!/usr/bin/python
# Copyright (c) vmmesh.mesh contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# Imports follow the documentation, as Ansible modules are laid out.
# ruff: noqa: E402

from __future__ import annotations

DOCUMENTATION = r"""
module: rendered_tree
short_description: Make a directory hold exactly a set of rendered files, replaced as a whole
version_added: 0.1.0
description:
  - Compares the directory O(path) with O(files) (relative name to content) and, when anything differs, writes the
    whole new tree beside O(path) and swaps it in with two renames. A reader sees either the complete previous tree or
    the complete new one, never a mix; files not in O(files) are gone after the swap.
  - One task writes any number of files, which is what C(playbooks/render.yml) needs for a mesh of thousands
    of sidecars (a loop of M(ansible.builtin.copy) costs a round trip per file).
  - Runs where the directory is; for a render on the controller, use C(delegate_to=localhost) or a local connection.
author: vmmesh.mesh contributors (@vmmesh)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
options:
  path:
    description: The directory. Its parent must exist.
    type: path
    required: true
  files:
    description:
      - The wanted content, by path relative to O(path) (C(hosts/web1/etc/envoy/lds.yaml)); sub-directories are
        created as needed. Names with C(..), C(.), an empty part or a leading C(/) are refused.
    type: dict
    required: true
  mode:
    description: Mode of every file.
    type: raw
    default: "0644"
  directory_mode:
    description: Mode of O(path) and of every sub-directory created.
    type: raw
    default: "0755"
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
    details: The diff lists the names of the files added, changed and removed, not their contents.
  platform:
    platforms: posix
notes:
  - Files are compared byte for byte; a tree already in place is not touched, so a second run reports no change.
"""

EXAMPLES = r"""
- name: Write the rendered mesh
  vmmesh.mesh.rendered_tree:
    path: /srv/mesh/render
    files: "{{ mesh | vmmesh.mesh.mesh_render(groups, hostvars) }}"
  delegate_to: localhost
  run_once: true
"""

RETURN = r"""
added:
  description: Files that did not exist.
  returned: always
  type: list
  elements: str
  sample: [plan.json]
changed_files:
  description: Files whose content or mode differs.
  returned: always
  type: list
  elements: str
  sample: [hosts/web1/etc/envoy/web/lds.yaml]
removed:
  description: Files present in the directory and not in O(files).
  returned: always
  type: list
  elements: str
  sample: [hosts/old1/etc/envoy/web/lds.yaml]
"""

from typing import Any

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.vmmesh.mesh.plugins.module_utils.config_files import ConfigFilesError, parse_mode
from ansible_collections.vmmesh.mesh.plugins.module_utils.rendered_tree import (
    RenderedTreeError,
    check_names,
    compare_tree,
    mode_changes,
    read_tree,
    replace_tree,
)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "path", "required": True},
            "files": {"type": "dict", "required": True},
            "mode": {"type": "raw", "default": "0644"},
            "directory_mode": {"type": "raw", "default": "0755"},
        },
        supports_check_mode=True,
    )
    path = module.params["path"].rstrip("/") or "/"
    files = {str(name): str(content) for name, content in module.params["files"].items()}
    try:
        mode = parse_mode(module.params["mode"], "mode")
        directory_mode = parse_mode(module.params["directory_mode"], "directory_mode")
        check_names(files)
        changes = compare_tree(read_tree(path), files)
        changed_files = sorted(set(changes.changed) | set(mode_changes(path, files, mode)) - set(changes.added))
        if (changes.added or changed_files or changes.removed) and not module.check_mode:
            replace_tree(path, files, mode, directory_mode)
    except (ConfigFilesError, RenderedTreeError, OSError) as error:
        module.fail_json(msg=str(error))
    changed = bool(changes.added or changed_files or changes.removed)
    result: dict[str, Any] = {
        "changed": changed,
        "added": changes.added,
        "changed_files": changed_files,
        "removed": changes.removed,
    }
    if module._diff and changed:
        result["diff"] = {
            "before_header": path,
            "after_header": path,
            "before": "".join(f"{name}\n" for name in sorted(set(changed_files) | set(changes.removed))),
            "after": "".join(f"{name}\n" for name in sorted(set(changed_files) | set(changes.added))),
        }
    module.exit_json(**result)


if __name__ == "__main__":
    main()
