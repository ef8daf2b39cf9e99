#!/usr/bin/python3
# Copyright (c) vmmesh.mesh contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Run one Envoy sidecar under systemd and hot-restart it on reload, so that a new binary or bootstrap takes over
the listening sockets of the running process and no caller sees a refused or reset connection.

Usage:
  envoy-hot-restarter run RUNTIME_DIR -- ENVOY [ARG...]
      The unit's main process. Starts ENVOY with restart epoch 0 and a base ID Envoy picks (written to
      RUNTIME_DIR/base-id); on SIGHUP starts the same command line again with the next epoch, which takes over
      from the running process (the old one drains, then exits). SIGTERM or SIGINT stops every process.
      When the newest process fails while an older one still serves, the older one keeps serving (the epoch that
      failed is written to RUNTIME_DIR/failed); Envoy refuses further hot restarts of that process, so only a
      restart of the unit applies the change. When no process is left, it exits non-zero and systemd starts the
      unit afresh. Once no process is left, the hot-restart shared memory of the base ID is removed (the unit's
      private /dev/shm goes with it anyway; run elsewhere, nothing is left behind).
  envoy-hot-restarter reload RUNTIME_DIR PID [TIMEOUT]
      The unit's ExecReload. Sends SIGHUP to PID (the `run` process) and waits, TIMEOUT seconds at most (60),
      until the admin endpoint reports the next epoch live; exits non-zero when that epoch failed or the time
      ran out, so that `systemctl reload` fails visibly.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time

USAGE = __doc__.split("Usage:\n", 1)[1]
SIGNALS = {signal.SIGHUP, signal.SIGTERM, signal.SIGINT, signal.SIGCHLD}


def log(message: str) -> None:
    print(f"envoy-hot-restarter: {message}", file=sys.stderr, flush=True)


class Restarter:
    """The epochs of one sidecar: a process per epoch, the newest serving, older ones draining."""

    def __init__(self, runtime_dir: str, command: list[str]) -> None:
        self.runtime_dir = runtime_dir
        self.command = command
        self.children: dict[int, int] = {}  # pid -> restart epoch
        self.stopping = False

    def _path(self, name: str) -> str:
        return os.path.join(self.runtime_dir, name)

    def arguments(self, epoch: int) -> list[str]:
        """The command line of ``epoch``: epoch 0 lets Envoy pick a free base ID, later ones reuse it."""
        extra = ["--restart-epoch", str(epoch), "--admin-address-path", self._path("admin")]
        if epoch == 0:
            extra += ["--use-dynamic-base-id", "--base-id-path", self._path("base-id")]
        else:
            extra += ["--base-id", self.base_id()]
        return [*self.command, *extra]

    def base_id(self) -> str:
        """The base ID epoch 0's Envoy picked and wrote down."""
        with open(self._path("base-id"), encoding="ascii") as handle:
            return handle.read().strip()

    def release_shared_memory(self) -> None:
        """Remove the hot-restart shared memory Envoy leaves behind (named after ten times the base ID)."""
        with contextlib.suppress(OSError, ValueError):
            os.unlink(f"/dev/shm/envoy_shared_memory_{int(self.base_id()) * 10}")

    def start(self) -> None:
        epoch = max(self.children.values(), default=-1) + 1
        arguments = self.arguments(epoch)
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child becomes Envoy
            try:
                for number in SIGNALS:
                    signal.signal(number, signal.SIG_DFL)
                signal.pthread_sigmask(signal.SIG_UNBLOCK, SIGNALS)
                os.execv(arguments[0], arguments)
            finally:
                os._exit(127)
        self.children[pid] = epoch
        log(f"started epoch {epoch} (pid {pid})")

    def stop(self) -> None:
        self.stopping = True
        for pid in list(self.children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    def reap(self) -> int | None:
        """Collect exited processes; the exit code of the restarter once none is left, else None."""
        newest = max(self.children.values(), default=-1)
        code = None
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            epoch = self.children.pop(pid, None)
            if epoch is None:
                continue
            code = os.waitstatus_to_exitcode(status)
            if code != 0 and not self.stopping:
                left = "an older epoch keeps serving" if self.children else "none is left"
                log(f"epoch {epoch} (pid {pid}) exited with {code}; {left}")
                with open(self._path("failed"), "w", encoding="ascii") as handle:
                    handle.write(f"{epoch}\n")
            elif epoch < newest:
                log(f"epoch {epoch} (pid {pid}) drained and exited")
        if self.children:
            return None
        if self.stopping:
            return 0
        return code if code and code > 0 else 1


def run(runtime_dir: str, command: list[str]) -> int:
    restarter = Restarter(runtime_dir, command)
    # Signals are taken one at a time with sigwaitinfo, none lost between two waits. SIGCHLD gets a handler that
    # is never run (the signal stays blocked) so that it is queued rather than ignored.
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
    restarter.start()
    while True:
        number = signal.sigwaitinfo(SIGNALS).si_signo
        if number == signal.SIGHUP and not restarter.stopping:
            restarter.start()
        elif number in (signal.SIGTERM, signal.SIGINT):
            restarter.stop()
        elif number == signal.SIGCHLD:
            code = restarter.reap()
            if code is not None:
                restarter.release_shared_memory()
                return code


def server_info(runtime_dir: str) -> dict | None:
    """The admin endpoint's /server_info of the newest process, or None while it does not answer."""
    # Imported here: only `reload` needs them, and they would double the resident size of the `run` process.
    import json
    import urllib.error
    import urllib.request

    try:
        with open(os.path.join(runtime_dir, "admin"), encoding="ascii") as handle:
            address = handle.read().strip()
        with urllib.request.urlopen(f"http://{address}/server_info", timeout=2) as response:
            return json.load(response)
    except (OSError, ValueError, urllib.error.URLError):
        return None


def epoch_of(info: dict | None) -> int:
    return int((info or {}).get("command_line_options", {}).get("restart_epoch", -1))


def failed_epoch(runtime_dir: str) -> int:
    """The last epoch that failed to take over, -1 if none did."""
    try:
        with open(os.path.join(runtime_dir, "failed"), encoding="ascii") as handle:
            return int(handle.read().strip() or -1)
    except (OSError, ValueError):
        return -1


def reload(runtime_dir: str, pid: int, timeout: float) -> int:
    before = epoch_of(server_info(runtime_dir))
    with contextlib.suppress(FileNotFoundError):
        os.unlink(os.path.join(runtime_dir, "failed"))
    os.kill(pid, signal.SIGHUP)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = server_info(runtime_dir)
        if info and epoch_of(info) > before and info.get("state") == "LIVE":
            log(f"epoch {epoch_of(info)} is live (Envoy {info.get('version', '?')})")
            return 0
        if failed_epoch(runtime_dir) > before:
            log(f"epoch {failed_epoch(runtime_dir)} failed to take over; epoch {before} keeps serving (see the log)")
            return 1
        time.sleep(0.2)
    log(f"no new epoch after epoch {before} went live within {timeout:g} s")
    return 1


def main(argv: list[str]) -> int:
    if len(argv) >= 4 and argv[0] == "run" and argv[2] == "--":
        return run(argv[1], argv[3:])
    if len(argv) in (3, 4) and argv[0] == "reload" and argv[2].isdigit():
        return reload(argv[1], int(argv[2]), float(argv[3]) if len(argv) == 4 else 60.0)
    print(USAGE, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
