#!/usr/bin/python3
# Copyright (c) vmmesh.mesh contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A tiny HTTP echo application for the lab scenarios.

Usage: vmmesh-echo SERVICE-PORT (the systemd instance name, e.g. api-8081)

Answers every request with JSON naming the host and service that answered, the path, and the request headers
(so the verifier sees what the sidecars forwarded: the caller's identity, trace headers). ``/status/<code>``
answers with that status; ``/delay/<ms>`` waits first.

Failures on demand, for the traffic policies of the sidecars:

* ``X-Echo-Fail-Host: <hostname>``: the instance on that host answers 503.
* ``X-Echo-Fail-First: <n>`` with ``X-Echo-Key: <key>``: the first n requests with that key answer 503 (counted per
  instance), the next ones are served.

Calls down the chain, as a real application behind a sidecar would make them: ``/chain`` calls, in order, every URL
in the environment variable ``ECHO_CALL`` (comma separated; the unit reads ``/etc/vmmesh-echo/<instance>.env``):

* ``http://127.0.0.1:<port>/...``: a GET through the local sidecar's upstream listener, forwarding the trace headers
  it received (W3C ``traceparent``/``tracestate``, B3, ``x-request-id``), as applications in a mesh are asked to;
* ``redis://127.0.0.1:<port>``: a Redis ``PING`` over TCP, which must answer ``+PONG``.

It answers 200 with every callee's answer nested in ``calls`` when all of them succeeded, 502 otherwise.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar
from urllib.error import HTTPError, URLError
from urllib.parse import urlsplit
from urllib.request import Request, urlopen

TRACE_HEADERS = (
    "x-request-id",
    "traceparent",
    "tracestate",
    "b3",
    "x-b3-traceid",
    "x-b3-spanid",
    "x-b3-parentspanid",
    "x-b3-sampled",
    "x-b3-flags",
)
CALL_TIMEOUT = 5.0


def call_http(url: str, headers: dict[str, str]) -> dict:
    """GET url with the trace headers passed on; the callee's status and answer."""
    request = Request(url, headers=headers)
    try:
        with urlopen(request, timeout=CALL_TIMEOUT) as response:
            status, body = response.status, response.read()
    except HTTPError as error:
        status, body = error.code, error.read()
    except (URLError, OSError) as error:
        return {"url": url, "ok": False, "error": str(error)}
    try:
        answer = json.loads(body)
    except ValueError:
        answer = body.decode(errors="replace")
    return {"url": url, "ok": 200 <= status < 300, "status": status, "answer": answer}


def call_redis(url: str) -> dict:
    """A Redis PING over TCP: the answer must be +PONG."""
    target = urlsplit(url)
    try:
        with socket.create_connection((target.hostname, target.port or 6379), timeout=CALL_TIMEOUT) as conn:
            conn.sendall(b"PING\r\n")
            reply = conn.recv(64).decode(errors="replace").strip()
    except OSError as error:
        return {"url": url, "ok": False, "error": str(error)}
    return {"url": url, "ok": reply == "+PONG", "reply": reply}


class Echo(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    service = "echo"
    failures: ClassVar[dict[str, int]] = {}
    failures_lock = threading.Lock()

    def _fails(self) -> bool:
        """Whether this request must fail because of the X-Echo-Fail-* headers."""
        if self.headers.get("X-Echo-Fail-Host") == socket.gethostname():
            return True
        first = self.headers.get("X-Echo-Fail-First", "")
        if not first.isdigit():
            return False
        key = self.headers.get("X-Echo-Key", "")
        with self.failures_lock:
            seen = self.failures.get(key, 0)
            self.failures[key] = seen + 1
        return seen < int(first)

    def _answer(self) -> None:
        status = 200
        parts = self.path.split("?")[0].strip("/").split("/")
        if len(parts) == 2 and parts[0] == "status" and parts[1].isdigit():
            status = int(parts[1])
        if len(parts) == 2 and parts[0] == "delay" and parts[1].isdigit():
            time.sleep(int(parts[1]) / 1000)
        calls = []
        if parts[0] == "chain":
            forwarded = {name: self.headers[name] for name in TRACE_HEADERS if self.headers.get(name)}
            for url in filter(None, os.environ.get("ECHO_CALL", "").split(",")):
                if url.startswith("redis://"):
                    calls.append(call_redis(url))
                else:
                    calls.append(call_http(url, forwarded))
            if not all(call["ok"] for call in calls):
                status = 502
        if self._fails():
            status = 503
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        body = json.dumps(
            {
                "host": socket.gethostname(),
                "service": self.service,
                "method": self.command,
                "path": self.path,
                "calls": calls,
                "headers": {k.lower(): v for k, v in self.headers.items()},
            },
            sort_keys=True,
        ).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name in TRACE_HEADERS:
            if self.headers.get(name):
                self.send_header(name, self.headers[name])
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = _answer

    def log_message(self, format: str, *args: object) -> None:
        pass


def main() -> None:
    service, port = sys.argv[1].rsplit("-", 1)
    Echo.service = service
    server = ThreadingHTTPServer(("127.0.0.1", int(port)), Echo)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
