#!/usr/bin/python
# Copyright (c) vmmesh.mesh contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# Imports follow the documentation, as Ansible modules are laid out.
# ruff: noqa: E402

from __future__ import annotations

DOCUMENTATION = r"""
module: config_files
short_description: Keep a set of configuration files in place under one directory, each renamed into place
version_added: 0.1.0
description:
  - Writes every file of O(files) whose content differs, each through a temporary file in its own directory
    renamed over the old one, so a program watching the file (Envoy's filesystem xDS and SDS) sees it change
    whole and at once. Creates the directories between O(root) and the files; sets mode, owner and group.
  - Files under O(root) that are not named are left alone (see M(vmmesh.mesh.rendered_tree) for a directory
    replaced whole).
  - One task writes any number of files, where a loop of M(ansible.builtin.copy) costs a round trip per file.
author: vmmesh.mesh contributors (@vmmesh)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
options:
  root:
    description: The directory the files live under. Created when missing, with O(directory_mode).
    type: path
    required: true
  files:
    description: The wanted content, by absolute path strictly inside O(root).
    type: dict
    required: true
  mode:
    description: Mode of every file.
    type: raw
    default: "0644"
  owner:
    description: Owner of every file and directory; unset leaves the owner the files are created with.
    type: str
  group:
    description: Group of every file and directory; unset leaves the group the files are created with.
    type: str
  directory_mode:
    description: Mode of O(root) and of every directory between it and the files.
    type: raw
    default: "0755"
  diff_contents:
    description:
      - Whether the diff shows the contents of changed files (one diff per file). Set to V(false) for files that
        hold secrets; the diff then names the files only.
    type: bool
    default: true
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
  platform:
    platforms: posix
notes:
  - Files are compared as text; a file already as wanted is not touched, so a second run reports no change.
  - A failure part-way leaves every file either as it was or as wanted, never half written.
"""

EXAMPLES = r"""
- name: Write the listeners and clusters of the web sidecar
  vmmesh.mesh.config_files:
    root: /etc/envoy
    files:
      /etc/envoy/web/lds.yaml: "{{ lds }}"
      /etc/envoy/web/cds.yaml: "{{ cds }}"
    owner: root
    group: envoy
    mode: "0640"
    directory_mode: "0750"
  register: written
"""

RETURN = r"""
added:
  description: Files that did not exist.
  returned: always
  type: list
  elements: str
  sample: [/etc/envoy/web/lds.yaml]
changed_files:
  description: Files whose content differed, and files whose mode, owner or group alone differed.
  returned: always
  type: list
  elements: str
  sample: [/etc/envoy/web/cds.yaml]
written:
  description: Every file written or fixed (RV(added) and RV(changed_files) together), sorted.
  returned: always
  type: list
  elements: str
  sample: [/etc/envoy/web/cds.yaml, /etc/envoy/web/lds.yaml]
directories:
  description: Directories created or whose mode, owner or group were fixed.
  returned: always
  type: list
  elements: str
  sample: [/etc/envoy/web]
"""

import os
from typing import Any

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.vmmesh.mesh.plugins.module_utils.config_files import (
    ConfigFilesError,
    FilesPlan,
    Ownership,
    apply_files,
    parse_mode,
    plan_files,
)


def _diff(plan: FilesPlan, files: dict[str, str], contents: bool) -> list[dict[str, str]]:
    diffs = [{"before_header": path, "after_header": path, "before": "", "after": ""} for path in plan.directories]
    for path in plan.added + plan.changed:
        before, after = (plan.before.get(path, ""), files[path]) if contents else (f"{path}\n", f"{path}\n")
        diffs.append({"before_header": path, "after_header": path, "before": before, "after": after})
    for path in plan.attributes:
        diffs.append({"before_header": path, "after_header": path, "before": "", "after": ""})
    return diffs


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "root": {"type": "path", "required": True},
            "files": {"type": "dict", "required": True},
            "mode": {"type": "raw", "default": "0644"},
            "owner": {"type": "str"},
            "group": {"type": "str"},
            "directory_mode": {"type": "raw", "default": "0755"},
            "diff_contents": {"type": "bool", "default": True},
        },
        supports_check_mode=True,
    )
    params = module.params
    root = os.path.normpath(params["root"])
    files = {str(path): str(content) for path, content in params["files"].items()}
    try:
        # In check mode an owner or group that an earlier task would create is not there yet: what would change
        # is still known (every file it owns).
        owner, group, missing_ok = params["owner"], params["group"], module.check_mode
        file_attributes = Ownership.named(parse_mode(params["mode"], "mode"), owner, group, missing_ok)
        directory_attributes = Ownership.named(
            parse_mode(params["directory_mode"], "directory_mode"), owner, group, missing_ok
        )
        plan = plan_files(root, files, file_attributes, directory_attributes)
        if plan.any and not module.check_mode:
            apply_files(plan, files, file_attributes, directory_attributes)
    except ConfigFilesError as error:
        module.fail_json(msg=str(error))
    result: dict[str, Any] = {
        "changed": plan.any,
        "added": plan.added,
        "changed_files": sorted(plan.changed + plan.attributes),
        "written": sorted(plan.added + plan.changed + plan.attributes),
        "directories": plan.directories,
    }
    if module._diff and plan.any:
        result["diff"] = _diff(plan, files, params["diff_contents"])
    module.exit_json(**result)


if __name__ == "__main__":
    main()
