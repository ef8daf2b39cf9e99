#!/usr/bin/python
# Copyright (c) vmmesh.mesh contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# Imports follow the documentation, as Ansible modules are laid out; the code runs on the managed host's Python (3.8+).
# ruff: noqa: E402

from __future__ import annotations

DOCUMENTATION = r"""
module: consul_service
short_description: Keep a mesh's service registrations in the local Consul agent
version_added: 0.1.0
author: vmmesh.mesh contributors (@vmmesh)
description:
  - Registers the given services, with their HTTP, gRPC or TCP checks, in the Consul agent of the host, and
    deregisters the agent's services of the same mesh (meta C(vmmesh_mesh)) that are no longer given. Services
    of other owners (no C(vmmesh_mesh) meta, or another mesh's) are never touched.
  - Reads what the agent holds first and registers only what differs, so a run with nothing to change changes
    nothing and leaves the checks' status as it is. The agent's API does not return a check's target (URL or
    address); the module therefore adds a digest of the whole definition to the service's meta
    (C(vmmesh_definition)) and compares it too.
  - Talks to the agent's HTTPS API by default, with the CA of O(ca_path) and, when the agent verifies incoming
    HTTPS connections (C(tls.defaults.verify_incoming), as M(vmmesh.mesh.consul) configures it), the client
    certificate O(client_cert) and key O(client_key).
  - Tokens are never returned, not even in the diff.
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
  mesh:
    description:
      - Name of the mesh that owns the registrations (the C(vmmesh_mesh) meta). Every given service gets it;
        registrations with this meta that are not given are removed when O(purge) is true.
    type: str
    required: true
  services:
    description:
      - "The services to keep, each as in a Consul service definition file (what
        C(vmmesh.mesh.mesh_consul_files) renders): the inner mapping, or the file's whole mapping with its
        C(service) key."
      - Keys used are C(id), C(name), C(address), C(port), C(tags), C(meta) (strings) and C(checks), each check
        with C(id), C(name), exactly one of C(http) (with C(method)), C(grpc) (with C(grpc_use_tls)) or C(tcp),
        and C(interval), C(timeout).
    type: list
    elements: dict
    default: []
  purge:
    description: Deregister the agent's services of O(mesh) that are not in O(services).
    type: bool
    default: true
  url:
    description: Base URL of the agent's HTTP(S) API.
    type: str
    default: https://127.0.0.1:8501
  token:
    description:
      - ACL token for reading the agent's services and checks and for deregistering (service:read on every
        service, service:write on those to remove), and for registering services without a token of their own.
    type: str
  service_tokens:
    description:
      - ACL token per service name. A service is registered with its own token, which the agent keeps to sync it
        to the catalog. Changing only a token does not re-register a service.
    type: dict
    default: {}
  ca_path:
    description: CA bundle that verifies the agent's certificate.
    type: path
  client_cert:
    description: Client certificate (PEM) presented to the agent, needed when it verifies incoming HTTPS.
    type: path
  client_key:
    description: Private key of O(client_cert).
    type: path
  validate_certs:
    description: Verify the agent's certificate. Leave it on outside tests.
    type: bool
    default: true
  timeout:
    description: Seconds to wait for each answer of the agent.
    type: int
    default: 10
notes:
  - The agent's API gives a check's name, type, interval and timeout, but not its target; a change made to a
    check's target behind the module's back, keeping the digest, is not seen.
seealso:
  - module: community.general.consul_agent_service
"""

EXAMPLES = r"""
- name: Register the host's mesh services, each with its token, over HTTPS with a client certificate
  vmmesh.mesh.consul_service:
    mesh: shop
    services: "{{ mesh | vmmesh.mesh.mesh_consul_files(groups, hostvars, inventory_hostname) | dict2items
                  | map(attribute='value') | map('from_json') | list }}"
    token: "{{ consul_management_token }}"
    service_tokens:
      api: "{{ api_service_token }}"
    ca_path: /etc/vmmesh/certs/consul/ca-bundle.pem
    client_cert: /etc/vmmesh/certs/consul/cert.pem
    client_key: /etc/vmmesh/certs/consul/key.pem
  no_log: true

- name: Register one TCP service by hand
  vmmesh.mesh.consul_service:
    mesh: shop
    purge: false
    url: http://127.0.0.1:8500
    token: "{{ consul_token }}"
    services:
      - id: cache
        name: cache
        address: 10.0.0.7
        port: 6379
        checks:
          - {id: cache-tcp, name: cache port, tcp: "10.0.0.7:6379", interval: 5s, timeout: 1s}
"""

RETURN = r"""
registered:
  description: IDs of the services that were (or in check mode would be) registered, new or changed.
  returned: always
  type: list
  elements: str
  sample: [api]
deregistered:
  description: IDs of the services of O(mesh) that were (or would be) removed.
  returned: always
  type: list
  elements: str
  sample: [old-service]
services:
  description: The registrations of O(mesh) after the run, by ID, as compared (durations in milliseconds).
  returned: always
  type: dict
  sample:
    api:
      id: api
      name: api
      address: 10.0.0.1
      port: 21000
      tags: [http, vmmesh]
      meta: {vmmesh_mesh: shop, vmmesh_definition: 0f3c2a9d1b7e5a44}
      checks:
        - {id: api-app, name: api application, type: http, interval_ms: 10000, timeout_ms: 2000}
"""

import json
from typing import Any
from urllib.error import HTTPError, URLError

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_text
from ansible.module_utils.urls import open_url
from ansible_collections.vmmesh.mesh.plugins.module_utils.consul_agent import (
    AgentClient,
    ConsulAgentError,
    ConsulDefinitionError,
    apply_changes,
    diff_text,
    owned_services,
    plan_changes,
    wanted_payloads,
)


def http_request(params: dict[str, Any]):
    """A ``request(method, path, body, token)`` over ``open_url`` with the module's TLS settings."""

    def request(method: str, path: str, body: Any, token: str) -> tuple[int, Any]:
        headers = {"Accept": "application/json"}
        if token:
            headers["X-Consul-Token"] = token
        data = None
        if body is not None:
            data = json.dumps(body)
            headers["Content-Type"] = "application/json"
        try:
            response = open_url(
                params["url"].rstrip("/") + path,
                method=method,
                data=data,
                headers=headers,
                validate_certs=params["validate_certs"],
                ca_path=params["ca_path"],
                client_cert=params["client_cert"],
                client_key=params["client_key"],
                timeout=params["timeout"],
            )
            status, text = response.getcode(), to_text(response.read())
        except HTTPError as error:
            status, text = error.code, to_text(error.read())
        except URLError as error:
            raise ConsulAgentError(
                f"{method} {params['url']}{path}: {error.reason}; check url, ca_path, client_cert and client_key "
                "(the agent may require a client certificate) and that the agent runs"
            ) from None
        try:
            return status, json.loads(text) if text.strip() else None
        except ValueError:
            return status, text

    return request


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "mesh": {"type": "str", "required": True},
            "services": {"type": "list", "elements": "dict", "default": []},
            "purge": {"type": "bool", "default": True},
            "url": {"type": "str", "default": "https://127.0.0.1:8501"},
            "token": {"type": "str", "no_log": True},
            "service_tokens": {"type": "dict", "default": {}, "no_log": True},
            "ca_path": {"type": "path"},
            "client_cert": {"type": "path"},
            "client_key": {"type": "path", "no_log": False},
            "validate_certs": {"type": "bool", "default": True},
            "timeout": {"type": "int", "default": 10},
        },
        required_together=[("client_cert", "client_key")],
        supports_check_mode=True,
    )
    params = module.params
    try:
        wanted = wanted_payloads(params["services"], params["mesh"])
        client = AgentClient(http_request(params), params["token"] or "")
        current = owned_services(client.services(), client.checks(), params["mesh"])
        changes = plan_changes(wanted, current, purge=params["purge"])
        if changes.changed and not module.check_mode:
            apply_changes(client, changes, wanted, params["service_tokens"])
    except (ConsulDefinitionError, ConsulAgentError) as error:
        module.fail_json(msg=str(error))
    result: dict[str, Any] = {
        "changed": changes.changed,
        "registered": changes.register,
        "deregistered": changes.deregister,
        "services": changes.after,
    }
    if module._diff:
        result["diff"] = {"before": diff_text(changes.before), "after": diff_text(changes.after)}
    module.exit_json(**result)


if __name__ == "__main__":
    main()
