"""``FakeOpenAIServer`` in a process of its own, for the benchmarks.

Run in the benchmark's own process, the server's handler threads would share the GIL with
the client being measured, and each arm would pay for the other's parsing. In a child
process the server has its own core (of the two we assume) and the client's figures are the
client's.

The parent talks to the child over its stdin/stdout, one line per command:
``count`` (chat requests so far), ``peak`` (most requests in flight at once since the last
``reset``), ``reset``, ``quit``.

The child turns off Nagle's algorithm on the server's sockets (``TCP_NODELAY``, the standard
library's ``StreamRequestHandler.disable_nagle_algorithm``). The handler writes headers and
body in two sends; on a reused keep-alive connection, the body then waits for the client's
delayed ACK, about 40 ms on Linux, added to every reply after a connection's first few. That
would hide a 20 ms target in the noise. ``--keep-nagle`` keeps the server as shipped, to show
the effect.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

REPLY = "The answer is 42."


class ServerProcess:
    """The parent's handle on a ``FakeOpenAIServer`` running in a child process."""

    def __init__(self, *, latency: float, keep_nagle: bool = False) -> None:
        command = [sys.executable, str(Path(__file__).resolve()), "--latency", str(latency)]
        if keep_nagle:
            command.append("--keep-nagle")
        self.latency = latency
        self._proc = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.base_url = self._read()
        if not self.base_url.startswith("http://127.0.0.1:"):
            self.close()
            raise RuntimeError(f"the benchmark server did not start: {self.base_url!r}")

    def _read(self) -> str:
        assert self._proc.stdout is not None
        return self._proc.stdout.readline().strip()

    def _ask(self, command: str) -> str:
        assert self._proc.stdin is not None
        self._proc.stdin.write(command + "\n")
        self._proc.stdin.flush()
        return self._read()

    @property
    def request_count(self) -> int:
        return int(self._ask("count"))

    def peak_in_flight(self) -> int | None:
        """The most chat requests in flight at once since the last ``reset_peak``."""
        value = self._ask("peak")
        return None if value == "n/a" else int(value)

    def reset_peak(self) -> None:
        self._ask("reset")

    def close(self) -> None:
        if self._proc.poll() is None:
            try:
                self._ask("quit")
                self._proc.wait(timeout=10)
            except (OSError, ValueError, subprocess.TimeoutExpired):
                self._proc.kill()
                self._proc.wait()

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _serve(latency: float, keep_nagle: bool) -> None:
    import socketserver

    from nbtoolkit.testing import FakeOpenAIServer

    if not keep_nagle:
        socketserver.StreamRequestHandler.disable_nagle_algorithm = True

    lock = threading.Lock()
    flight = {"now": 0, "peak": 0}
    counting = hasattr(FakeOpenAIServer, "_handle_chat")

    class CountingServer(FakeOpenAIServer):
        # The latency is spent inside _handle_chat, so this counts requests being served.
        def _handle_chat(self, handler: Any, request: dict[str, Any]) -> None:
            with lock:
                flight["now"] += 1
                flight["peak"] = max(flight["peak"], flight["now"])
            try:
                super()._handle_chat(handler, request)  # type: ignore[misc]
            finally:
                with lock:
                    flight["now"] -= 1

    server_class = CountingServer if counting else FakeOpenAIServer
    with server_class(reply=REPLY, latency=latency) as server:
        print(server.base_url, flush=True)
        for line in sys.stdin:
            command = line.strip()
            if command == "count":
                print(server.request_count, flush=True)
            elif command == "peak":
                print(flight["peak"] if counting else "n/a", flush=True)
            elif command == "reset":
                with lock:
                    flight["peak"] = flight["now"]
                print("ok", flush=True)
            elif command == "quit":
                print("bye", flush=True)
                break
            else:
                print(f"unknown command {command!r}", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--latency", type=float, required=True)
    parser.add_argument("--keep-nagle", action="store_true")
    options = parser.parse_args()
    _serve(options.latency, options.keep_nagle)
