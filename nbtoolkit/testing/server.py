"""``FakeOpenAIServer``: the server itself, its HTTP handler and its bookkeeping."""

from __future__ import annotations

import contextlib
import json
import random
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from socketserver import TCPServer
from types import TracebackType
from typing import Any, TypeVar

from .faults import (
    CHAT_PATHS,
    ERROR_BODIES,
    MODELS_PATHS,
    RANDOM_FAULTS,
    Fault,
    FaultKind,
    FaultSpec,
    Reply,
    echo,
    format_seconds,
    messages_of,
    text_of,
    to_fault,
)

__all__ = ["FakeOpenAIServer"]


class LoopbackServer(ThreadingHTTPServer):
    """An HTTP server on 127.0.0.1 at a free port, serving ``handler`` for ``owner`` (one of
    the fakes here, which the handler reads as ``self.server.owner``)."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, owner: Any, handler: type[BaseHTTPRequestHandler]) -> None:
        self.owner = owner
        super().__init__(("127.0.0.1", 0), handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind calls socket.getfqdn(), a reverse DNS lookup that can
        # stall for seconds on a machine without a network.
        TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)


_S = TypeVar("_S", bound="Served")


class Served:
    """``with server:`` starts a fake and stops it, whatever happens inside."""

    def start(self: _S) -> _S:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self: _S) -> _S:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class _HTTPServer(LoopbackServer):
    request_queue_size = 256

    def __init__(self, owner: FakeOpenAIServer) -> None:
        super().__init__(owner, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that time out or drop connections are routine here, not server bugs.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    # Keep-alive, as the openai/httpx clients expect; every response sends Content-Length.
    protocol_version = "HTTP/1.1"
    server_version = "FakeOpenAIServer/1.0"
    # Headers and body go out in two writes; with Nagle on, a reused connection waits ~40 ms
    # for the client's delayed ACK before the body, which would swamp every latency figure.
    disable_nagle_algorithm = True
    server: _HTTPServer

    def setup(self) -> None:
        super().setup()
        self.server.owner._track(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.owner._track(self.connection, add=False)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path in MODELS_PATHS:
            self._send_json(200, self.server.owner._models_body())
        else:
            self._send_error_json(404, f"no route for GET {path}", "invalid_request_error")

    def do_POST(self) -> None:
        body = self._read_body()
        if body is None:
            return
        path = self.path.split("?", 1)[0]
        if path not in CHAT_PATHS:
            self._send_error_json(404, f"no route for POST {path}", "invalid_request_error")
            return
        try:
            request = json.loads(body)
        except ValueError:
            self._send_error_json(400, "request body is not valid JSON", "invalid_request_error")
            return
        if not isinstance(request, dict):
            self._send_error_json(400, "request body is not a JSON object", "invalid_request_error")
            return
        self.server.owner._handle_chat(self, request)

    def _other(self) -> None:
        self._read_body()
        self._send_error_json(
            404, f"no route for {self.command} {self.path}", "invalid_request_error"
        )

    do_PUT = do_DELETE = do_PATCH = _other

    def _read_body(self) -> bytes | None:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            # Not needed by the OpenAI clients; refuse rather than desynchronise the stream.
            self.close_connection = True
            self._send_error_json(
                411, "chunked request bodies are not supported", "invalid_request_error"
            )
            return None
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            self.close_connection = True
            self._send_error_json(400, "bad Content-Length", "invalid_request_error")
            return None
        return self.rfile.read(length) if length > 0 else b""

    def _send_bytes(
        self, status: int, payload: bytes, headers: Mapping[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

    def _send_json(self, status: int, obj: Any, headers: Mapping[str, str] | None = None) -> None:
        self._send_bytes(status, json.dumps(obj).encode("utf-8"), headers)

    def _send_error_json(
        self,
        status: int,
        message: str,
        type_: str,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        error = {"message": message, "type": type_, "param": None, "code": code}
        self._send_json(status, {"error": error}, headers)

    def _drop(self, reset: bool) -> None:
        self.close_connection = True
        if reset:
            try:
                # Linger 0 makes close() send RST instead of FIN: the client sees a reset.
                self.connection.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                )
                self.connection.close()
            except OSError:
                pass


class FakeOpenAIServer(Served):
    """An OpenAI-compatible chat-completions server on ``127.0.0.1`` for tests.

    Args:
        reply: the assistant's reply: a string, or a callable given the decoded request
            JSON. The default echoes ``"echo: <last user message content>"``.
        latency: seconds to wait before answering every request (faults included).
        faults: scripted faults, either a mapping of 0-based request index to fault kind,
            or a callable ``(index, request_json) -> kind | None``. They take precedence
            over ``fault_rate``.
        fault_rate: probability that a request gets a random fault from ``fault_kinds``.
        seed: seed of the random faults; the draws are made in request-index order, so
            the same seed faults the same indices.
        fault_kinds: the kinds random faults are drawn from, uniformly (default: the
            transient ones, ``RANDOM_FAULTS``).
        retry_after: seconds advertised in the ``Retry-After`` header of 429s.
        retry_after_format: how 429s say it: ``"seconds"`` (``Retry-After: 1``), ``"date"``
            (``Retry-After`` as an HTTP date) or ``"ms"`` (OpenAI's ``retry-after-ms`` only).
        hang_seconds: how long a ``"hang"`` waits before closing the connection
            (``stop()`` ends the wait at once).
        prompt_tokens: the reported ``usage.prompt_tokens``; default: words in the prompt.
        completion_tokens: the reported ``usage.completion_tokens``; default: words in
            the reply.
        send_usage: False to leave ``usage`` out of replies, as some local servers and
            proxies do.
        stream_delay: seconds between the pieces of a streamed reply (``"stream": true``:
            server-sent events, a word a piece, then ``usage`` when
            ``stream_options.include_usage`` asks for it, then ``data: [DONE]``).

    Use it as a context manager, or call ``start()`` and ``stop()``.
    """

    def __init__(
        self,
        reply: Reply | None = None,
        *,
        latency: float = 0.0,
        faults: FaultSpec | None = None,
        fault_rate: float = 0.0,
        seed: int = 0,
        fault_kinds: Iterable[FaultKind] = RANDOM_FAULTS,
        retry_after: float = 1.0,
        retry_after_format: str = "seconds",
        hang_seconds: float = 30.0,
        prompt_tokens: int | None = None,
        completion_tokens: int | None = None,
        send_usage: bool = True,
        stream_delay: float = 0.0,
    ) -> None:
        if latency < 0:
            raise ValueError(f"latency must be >= 0, got {latency!r}")
        if not 0.0 <= fault_rate <= 1.0:
            raise ValueError(f"fault_rate must be between 0 and 1, got {fault_rate!r}")
        if hang_seconds < 0:
            raise ValueError(f"hang_seconds must be >= 0, got {hang_seconds!r}")
        self.reply: Reply = echo if reply is None else reply
        self.latency = float(latency)
        self._scripted: Callable[[int, dict[str, Any]], FaultKind | None] | None
        if faults is None:
            self._scripted = None
        elif callable(faults):
            self._scripted = faults
        else:
            # Validated now, so a typo fails at construction instead of mid-test.
            table = {int(i): to_fault(k) for i, k in faults.items()}
            self._scripted = lambda index, _request: table.get(index)
        self.fault_rate = float(fault_rate)
        self.seed = seed
        self.fault_kinds: tuple[Fault, ...] = tuple(to_fault(k) for k in fault_kinds)
        if self.fault_rate > 0 and not self.fault_kinds:
            raise ValueError("fault_rate > 0 needs at least one fault kind")
        self.retry_after = float(retry_after)
        if retry_after_format not in ("seconds", "date", "ms"):
            raise ValueError(
                f"retry_after_format must be 'seconds', 'date' or 'ms', got {retry_after_format!r}"
            )
        self.retry_after_format = retry_after_format
        self.hang_seconds = float(hang_seconds)
        self.prompt_tokens = prompt_tokens
        self.completion_tokens = completion_tokens
        self.send_usage = send_usage
        if stream_delay < 0:
            raise ValueError(f"stream_delay must be >= 0, got {stream_delay!r}")
        self.stream_delay = float(stream_delay)

        self._lock = threading.Lock()
        self._rng = random.Random(seed)
        self._requests: list[dict[str, Any]] = []
        self._authorizations: list[str | None] = []
        self._faults_served: list[tuple[int, Fault]] = []
        self._intervals: list[tuple[float, float]] = []
        self._count = 0
        self._connections: set[socket.socket] = set()
        self.connections_opened = 0  # accepted since start: how often a client connected
        self._stopping = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> FakeOpenAIServer:
        """Bind a free port on 127.0.0.1 and serve from a daemon thread; returns ``self``."""
        if self._httpd is not None:
            raise RuntimeError("FakeOpenAIServer is already running")
        self._stopping = threading.Event()
        self._httpd = _HTTPServer(self)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"FakeOpenAIServer:{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and drop open connections; hanging requests are released at once."""
        httpd, thread = self._httpd, self._thread
        if httpd is None:
            return
        self._stopping.set()
        httpd.shutdown()
        httpd.server_close()
        with self._lock:
            connections = list(self._connections)
        # Idle keep-alive connections would otherwise keep their handler threads alive.
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        if thread is not None:
            thread.join(timeout=5)
        self._httpd = None
        self._thread = None

    # -- observation -----------------------------------------------------------------

    @property
    def port(self) -> int:
        """The port the server listens on (only while running)."""
        if self._httpd is None:
            raise RuntimeError("FakeOpenAIServer is not running; call start() first")
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>/v1``, to pass as litellm's ``api_base``."""
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def requests(self) -> list[dict[str, Any]]:
        """A copy of the decoded JSON bodies of chat-completion requests, in arrival order."""
        with self._lock:
            return list(self._requests)

    @property
    def authorizations(self) -> list[str | None]:
        """The ``Authorization`` header of each chat-completion request (None when absent),
        in arrival order: which key a client sent to this host."""
        with self._lock:
            return list(self._authorizations)

    @property
    def request_count(self) -> int:
        """The number of chat-completion requests received, faulted ones included."""
        with self._lock:
            return self._count

    @property
    def intervals(self) -> list[tuple[float, float]]:
        """``(received, answered)`` per finished chat request, on ``time.monotonic``'s clock:
        requests whose intervals overlap were served concurrently."""
        with self._lock:
            return list(self._intervals)

    def max_overlap(self) -> int:
        """The most requests that were being served at one moment."""
        events = sorted(
            [(start, 1) for start, _ in self.intervals] + [(end, -1) for _, end in self.intervals],
            key=lambda e: (e[0], e[1]),
        )
        most = now = 0
        for _, step in events:
            now += step
            most = max(most, now)
        return most

    @property
    def faults_served(self) -> list[tuple[int, Fault]]:
        """A copy of ``(request_index, kind)`` for every fault produced."""
        with self._lock:
            return list(self._faults_served)

    def reset(self) -> None:
        """Forget all requests and faults; request indices and the random faults restart."""
        with self._lock:
            self._requests.clear()
            self._authorizations.clear()
            self._faults_served.clear()
            self._intervals.clear()
            self._count = 0
            self._rng = random.Random(self.seed)

    def __repr__(self) -> str:
        where = self.base_url if self._httpd is not None else "stopped"
        return f"<FakeOpenAIServer {where} requests={self.request_count}>"

    # -- request handling (called from handler threads) -----------------------------

    @property
    def open_connections(self) -> int:
        """Client connections open now (kept alive between requests or serving one)."""
        with self._lock:
            return len(self._connections)

    def _track(self, conn: socket.socket, *, add: bool) -> None:
        with self._lock:
            if add:
                self._connections.add(conn)
                self.connections_opened += 1
            else:
                self._connections.discard(conn)

    def _models_body(self) -> dict[str, Any]:
        return {
            "object": "list",
            "data": [
                {"id": "fake-model", "object": "model", "created": 0, "owned_by": "nbtoolkit"}
            ],
        }

    def _handle_chat(self, handler: _Handler, request: dict[str, Any]) -> None:
        received = time.monotonic()
        try:
            self._serve_chat(handler, request)
        finally:
            with self._lock:
                self._intervals.append((received, time.monotonic()))

    def _serve_chat(self, handler: _Handler, request: dict[str, Any]) -> None:
        with self._lock:
            index = self._count
            self._count += 1
            self._requests.append(request)
            self._authorizations.append(handler.headers.get("Authorization"))
            # Drawn for every request, under the lock, so the same seed faults the same
            # indices whatever the scripted faults or the thread scheduling.
            random_fault: Fault | None = None
            if self.fault_rate > 0 and self._rng.random() < self.fault_rate:
                random_fault = self._rng.choice(self.fault_kinds)

        stopping = self._stopping
        if self.latency > 0:
            stopping.wait(self.latency)

        try:
            fault = self._scripted_fault(index, request)
        except Exception as exc:
            handler._send_error_json(500, f"faults callable raised {exc!r}", "fake_server_error")
            return
        if fault is None:
            fault = random_fault
        if fault is not None:
            with self._lock:
                self._faults_served.append((index, fault))
            self._serve_fault(handler, fault, index, request, stopping)
            return

        try:
            content = self._reply_for(request)
        except Exception as exc:
            handler._send_error_json(500, f"reply callable raised {exc!r}", "fake_server_error")
            return
        if request.get("stream"):
            self._stream(handler, index, request, content, stopping)
            return
        handler._send_json(200, self._completion(index, request, content))

    def _stream(
        self,
        handler: _Handler,
        index: int,
        request: dict[str, Any],
        content: str,
        stopping: threading.Event,
        cut: bool = False,
    ) -> None:
        """Send ``content`` as server-sent events in a chunked body, a word an event; with
        ``cut``, only the first half of them, then reset the connection."""
        import re

        body = self._completion(index, request, content)
        head = {k: body[k] for k in ("id", "created", "model")}
        head["object"] = "chat.completion.chunk"
        words = re.findall(r"\s*\S+|\s+", content) or [""]
        if cut:
            words = words[: max(1, len(words) // 2)]
        handler.send_response(200)
        handler.send_header("Content-Type", "text/event-stream")
        handler.send_header("Cache-Control", "no-cache")
        handler.send_header("Transfer-Encoding", "chunked")
        handler.end_headers()

        def event(data: Any) -> None:
            payload = b"data: " + (data if isinstance(data, bytes) else json.dumps(data).encode())
            payload += b"\n\n"
            handler.wfile.write(b"%X\r\n%s\r\n" % (len(payload), payload))
            handler.wfile.flush()

        first = {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}
        event({**head, "choices": [first]})
        for i, word in enumerate(words):
            if i and self.stream_delay:
                stopping.wait(self.stream_delay)
            piece = {"index": 0, "delta": {"content": word}, "finish_reason": None}
            event({**head, "choices": [piece]})
        if cut:
            handler._drop(reset=True)
            return
        event({**head, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        options = request.get("stream_options")
        if self.send_usage and isinstance(options, dict) and options.get("include_usage"):
            event({**head, "choices": [], "usage": body["usage"]})
        event(b"[DONE]")
        handler.wfile.write(b"0\r\n\r\n")
        handler.wfile.flush()

    def _scripted_fault(self, index: int, request: dict[str, Any]) -> Fault | None:
        if self._scripted is None:
            return None
        kind = self._scripted(index, request)
        return None if kind is None else to_fault(kind)

    def _reply_for(self, request: dict[str, Any]) -> str:
        content = self.reply(request) if callable(self.reply) else self.reply
        if not isinstance(content, str):
            raise TypeError(f"reply must be a str, got {type(content).__name__}")
        return content

    def _completion(
        self, index: int, request: dict[str, Any], content: str | None
    ) -> dict[str, Any]:
        prompt_words = sum(len(text_of(m.get("content")).split()) for m in messages_of(request))
        prompt = self.prompt_tokens if self.prompt_tokens is not None else prompt_words
        if self.completion_tokens is not None:
            completion = self.completion_tokens
        else:
            completion = len(content.split()) if content else 0
        choices = []
        if content is not None:
            choices.append(
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            )
        body: dict[str, Any] = {
            "id": f"chatcmpl-fake-{index}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": str(request.get("model", "fake-model")),
            "choices": choices,
        }
        if self.send_usage:
            body["usage"] = {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
            }
        return body

    def _serve_fault(
        self,
        handler: _Handler,
        fault: Fault,
        index: int,
        request: dict[str, Any],
        stopping: threading.Event,
    ) -> None:
        if fault in ERROR_BODIES:
            status, error = ERROR_BODIES[fault]
            headers: dict[str, str] = {}
            if fault is Fault.RATE_LIMIT:
                headers.update(self._retry_after_headers())
            handler._send_json(status, {"error": error}, headers)
        elif fault is Fault.HANG:
            # An Event, not time.sleep, so that stop() releases the thread at once.
            stopping.wait(self.hang_seconds)
            handler._drop(reset=False)
        elif fault is Fault.RESET:
            handler._drop(reset=True)
        elif fault is Fault.STREAM_CUT:
            if request.get("stream"):
                content = self._reply_for(request)
                self._stream(handler, index, request, content, stopping, cut=True)
            else:
                handler._drop(reset=True)
        elif fault is Fault.MALFORMED:
            handler._send_bytes(200, b'{"id": "x", "choices": [')
        elif fault is Fault.EMPTY_CHOICES:
            handler._send_json(200, self._completion(index, request, None))
        elif fault is Fault.NULL_CONTENT:
            body = self._completion(index, request, "")
            body["choices"][0]["message"].update(content=None, refusal="I can't help with that.")
            handler._send_json(200, body)
        elif fault is Fault.ODD_SHAPE:
            body = self._completion(index, request, self._reply_for(request))
            for name in ("id", "created", "object"):
                body.pop(name, None)
            body.update(service_tier=7, system_fingerprint=["x"], x_gateway={"region": "eu"})
            body["choices"][0].update(index="0", finish_reason=None, x_score=0.5)
            body["choices"][0]["message"].update(annotations="none", x_note=1)
            handler._send_json(200, body)

    def _retry_after_headers(self) -> dict[str, str]:
        if self.retry_after_format == "ms":
            return {"retry-after-ms": format_seconds(self.retry_after * 1000)}
        if self.retry_after_format == "date":
            from email.utils import formatdate

            # HTTP dates have whole seconds: round up so the wait is never shorter.
            return {"Retry-After": formatdate(time.time() + self.retry_after + 1, usegmt=True)}
        return {"Retry-After": format_seconds(self.retry_after)}
