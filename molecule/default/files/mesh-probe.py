#!/usr/bin/python3
# Copyright (c) vmmesh.mesh contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Calls into the mesh from a lab host, for molecule/default's verifier; prints one JSON object.

mesh-probe http URL [--count N] [--cert C --key K]
    N GETs (mTLS with C/K when the URL is https; the server certificate is not checked: the probe tests
    what the server accepts). Prints {sent, statuses: {status: count}, errors: {error: count}, hosts, chain_ok}.
mesh-probe redis HOST PORT [--cert C --key K]
    A Redis PING (over TLS with C/K when given). Prints {pong: bool, error}.
"""

from __future__ import annotations

import argparse
import json
import socket
import ssl
from collections import Counter
from urllib.error import HTTPError, URLError
from urllib.request import urlopen


def _context(cert: str | None, key: str | None) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    if cert:
        context.load_cert_chain(cert, key)
    return context


def probe_http(url: str, count: int, cert: str | None, key: str | None) -> dict:
    statuses: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    hosts: Counter[str] = Counter()
    chain_ok = 0
    context = _context(cert, key) if url.startswith("https") else None
    for _attempt in range(count):
        try:
            with urlopen(url, timeout=5, context=context) as answer:
                statuses[str(answer.status)] += 1
                body = json.loads(answer.read() or b"{}")
                calls = body.get("calls", [])
                route = [body.get("host", "?")]
                route += [call["answer"].get("host", "?") for call in calls if isinstance(call.get("answer"), dict)]
                hosts[" -> ".join(route)] += 1
                chain_ok += all(call.get("ok") for call in calls)
        except HTTPError as error:
            statuses[str(error.code)] += 1
        except (URLError, OSError, ValueError) as error:
            reason = getattr(error, "reason", error)
            errors[type(reason).__name__] += 1
    return {
        "sent": count,
        "statuses": dict(statuses),
        "errors": dict(errors),
        "hosts": dict(hosts),
        "chain_ok": chain_ok,
    }


def probe_redis(host: str, port: int, cert: str | None, key: str | None) -> dict:
    try:
        with socket.create_connection((host, port), timeout=5) as raw:
            conn = _context(cert, key).wrap_socket(raw) if cert else raw
            conn.sendall(b"PING\r\n")
            answer = conn.recv(64)
        return {"pong": answer.startswith(b"+PONG"), "error": "" if answer else "closed"}
    except (OSError, ssl.SSLError) as error:
        return {"pong": False, "error": type(error).__name__}


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="mode", required=True)
    http = sub.add_parser("http")
    http.add_argument("url")
    http.add_argument("--count", type=int, default=1)
    redis = sub.add_parser("redis")
    redis.add_argument("host")
    redis.add_argument("port", type=int)
    for mode in (http, redis):
        mode.add_argument("--cert")
        mode.add_argument("--key")
    args = parser.parse_args()
    if args.mode == "http":
        result = probe_http(args.url, args.count, args.cert, args.key)
    else:
        result = probe_redis(args.host, args.port, args.cert, args.key)
    print(json.dumps(result, sort_keys=True))


if __name__ == "__main__":
    main()
