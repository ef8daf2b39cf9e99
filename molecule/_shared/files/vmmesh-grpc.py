#!/usr/bin/python3
# Copyright (c) vmmesh.mesh contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A tiny gRPC application and client for the lab scenarios (Debian's python3-grpcio, no generated code).

Usage:
  vmmesh-grpc serve SERVICE-PORT          (the systemd instance name, e.g. greeter-8090)
  vmmesh-grpc call PORT METHOD [ARGUMENT] (calls 127.0.0.1:PORT, prints one JSON line)

Methods, all unary with raw bytes:
  /grpc.health.v1.Health/Check  answers SERVING (the HealthCheckResponse bytes 08 01)
  /vmmesh.Echo/Call             answers JSON naming the host, the service and the call's metadata
  /vmmesh.Echo/Fail             fails with the status code named by the argument (e.g. NOT_FOUND)
"""

from __future__ import annotations

import json
import socket
import sys
from concurrent import futures

import grpc

SERVING = b"\x08\x01"


def _serve(instance: str) -> None:
    service, port = instance.rsplit("-", 1)

    def check(request: bytes, context: grpc.ServicerContext) -> bytes:
        return SERVING

    def call(request: bytes, context: grpc.ServicerContext) -> bytes:
        metadata = {key: value for key, value in context.invocation_metadata() if isinstance(value, str)}
        answer = {"host": socket.gethostname(), "service": service, "argument": request.decode(), "metadata": metadata}
        return json.dumps(answer, sort_keys=True).encode()

    def fail(request: bytes, context: grpc.ServicerContext) -> bytes:
        context.abort(grpc.StatusCode[request.decode() or "UNKNOWN"], f"{service} was asked to fail")
        return b""

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
    methods = {"grpc.health.v1.Health": {"Check": check}, "vmmesh.Echo": {"Call": call, "Fail": fail}}
    for name, handlers in methods.items():
        server.add_generic_rpc_handlers(
            (
                grpc.method_handlers_generic_handler(
                    name, {method: grpc.unary_unary_rpc_method_handler(handler) for method, handler in handlers.items()}
                ),
            )
        )
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    server.wait_for_termination()


def _call(port: str, method: str, argument: str) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = channel.unary_unary(method)
        try:
            reply = stub(argument.encode(), timeout=5)
        except grpc.RpcError as error:
            print(json.dumps({"code": error.code().name, "details": error.details()}))
            return
    text = reply.decode(errors="replace")
    try:
        print(json.dumps({"code": "OK", "reply": json.loads(text)}))
    except ValueError:
        print(json.dumps({"code": "OK", "raw": reply.hex()}))


def main() -> None:
    if sys.argv[1:2] == ["serve"] and len(sys.argv) == 3:
        _serve(sys.argv[2])
    elif sys.argv[1:2] == ["call"] and len(sys.argv) in (4, 5):
        _call(sys.argv[2], sys.argv[3], sys.argv[4] if len(sys.argv) == 5 else "")
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
