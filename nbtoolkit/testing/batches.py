"""``FakeBatchServer``: OpenAI's Files and Batches endpoints on ``127.0.0.1``, for tests.

It serves what litellm's batch functions (``acreate_file``, ``acreate_batch``,
``aretrieve_batch``, ``afile_content``, ``acancel_batch``) send with
``custom_llm_provider="openai"`` and ``api_base=server.base_url``:

- ``POST /v1/files`` (multipart, ``purpose=batch``) and ``GET /v1/files/{id}/content``;
- ``POST /v1/batches``, ``GET /v1/batches/{id}``, ``POST /v1/batches/{id}/cancel``;
- ``POST /v1/chat/completions``, so a model can also be asked live at the same address.

A batch moves one state per retrieval, ``validating -> in_progress -> <final>``, so a test
steps it by polling, with no clock. The final state is ``"completed"`` unless ``final``
says otherwise (``"failed"``, ``"expired"``, ``"cancelled"`` by batch number). ``fail``
makes single requests fail (they go to the batch's error file with a status and a message);
an expired or cancelled batch answers only its first half and lists the rest as
``batch_expired`` / ``batch_cancelled`` in its error file. ``max_requests`` and
``max_file_bytes`` make the server refuse a batch over the limit, as OpenAI's does.

``batches_created`` counts the batches created: the proof that nothing was submitted twice.
"""

from __future__ import annotations

import email.parser
import email.policy
import json
import threading
import time
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler
from typing import Any

from .faults import echo
from .server import LoopbackServer, Served

__all__ = ["FakeBatchServer"]

FINAL_STATES = ("completed", "failed", "expired", "cancelled")


class _HTTPServer(LoopbackServer):
    def __init__(self, owner: FakeBatchServer) -> None:
        super().__init__(owner, _Handler)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _HTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._route("GET", b"")

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self._route("POST", self.rfile.read(length) if length else b"")

    def _route(self, method: str, body: bytes) -> None:
        owner = self.server.owner
        path = self.path.split("?", 1)[0].rstrip("/")
        with owner._lock:
            owner._authorizations.append(self.headers.get("Authorization"))
        try:
            status, payload, raw = owner._serve(method, path, body, self.headers)
        except Exception as exc:  # a bug in a test's callable: a 500 that says so
            status, payload, raw = 500, _error(f"fake batch server: {exc!r}"), None
        data = raw if raw is not None else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header(
            "Content-Type", "application/octet-stream" if raw is not None else "application/json"
        )
        self.send_header("Content-Length", str(len(data)))
        # One request per connection: litellm's batch functions build an OpenAI client per
        # call and never close it, so a kept-alive connection would be left open on their side.
        self.send_header("Connection", "close")
        self.close_connection = True
        self.end_headers()
        self.wfile.write(data)


def _error(message: str, type_: str = "invalid_request_error") -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": None, "code": None}}


class FakeBatchServer(Served):
    """OpenAI's Files and Batches API on ``127.0.0.1``, stepped by polling (see the module).

    Args:
        reply: the assistant's reply to one request line's body: a string, or a callable
            given the body (``{"model", "messages", ...}``); default ``"echo: <prompt>"``.
        fail: ``(custom_id, body) -> message or None``: a request that fails on its own
            (its error-file line has status 500 and this message).
        final: the final state by batch number (0-based, in creation order): one of
            ``"completed"`` (the default), ``"failed"``, ``"expired"``, ``"cancelled"``.
        max_requests, max_file_bytes: a batch over either limit fails validation.
        polls: retrievals a batch spends in ``validating`` and then ``in_progress``.
        usage: ``(prompt_tokens, completion_tokens)`` reported per answered request;
            default: words in the prompt and in the reply.
    """

    def __init__(
        self,
        reply: str | Callable[[dict[str, Any]], str] | None = None,
        *,
        fail: Callable[[str, dict[str, Any]], str | None] | None = None,
        final: Mapping[int, str] | None = None,
        max_requests: int = 50_000,
        max_file_bytes: int = 200 * 1024 * 1024,
        polls: int = 1,
        usage: tuple[int, int] | None = None,
    ) -> None:
        for state in (final or {}).values():
            if state not in FINAL_STATES:
                raise ValueError(f"final state {state!r} is not one of {', '.join(FINAL_STATES)}")
        self.reply = echo if reply is None else reply
        self.fail = fail
        self.final = dict(final or {})
        self.max_requests = max_requests
        self.max_file_bytes = max_file_bytes
        self.polls = polls
        self.usage = usage
        self._lock = threading.Lock()
        self._files: dict[str, tuple[str, bytes]] = {}  # id -> (purpose, content)
        self._batches: dict[str, dict[str, Any]] = {}
        self._steps: dict[str, int] = {}
        self._authorizations: list[str | None] = []
        self.chat_requests: list[dict[str, Any]] = []
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> FakeBatchServer:
        if self._httpd is not None:
            raise RuntimeError("FakeBatchServer is already running")
        self._httpd = _HTTPServer(self)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>/v1``, to pass as ``api_base``."""
        if self._httpd is None:
            raise RuntimeError("FakeBatchServer is not running; call start() first")
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    # -- observation -----------------------------------------------------------------

    @property
    def batches_created(self) -> int:
        """How many batches were created (each ``POST /v1/batches`` that was accepted)."""
        with self._lock:
            return len(self._batches)

    @property
    def batches(self) -> list[dict[str, Any]]:
        """A copy of every batch object, in creation order."""
        with self._lock:
            return [dict(b) for b in self._batches.values()]

    def lines_of(self, batch_id: str) -> list[dict[str, Any]]:
        """The request lines of a batch's input file."""
        with self._lock:
            content = self._files[self._batches[batch_id]["input_file_id"]][1]
        return [json.loads(line) for line in content.splitlines() if line.strip()]

    @property
    def authorizations(self) -> list[str | None]:
        """The ``Authorization`` header of every request, in arrival order."""
        with self._lock:
            return list(self._authorizations)

    # -- requests --------------------------------------------------------------------

    def _serve(
        self, method: str, path: str, body: bytes, headers: Any
    ) -> tuple[int, Any, bytes | None]:
        parts = path.strip("/").split("/")
        if parts[:1] == ["v1"]:
            parts = parts[1:]
        if method == "POST" and parts == ["files"]:
            return self._upload(body, headers.get("Content-Type", ""))
        if method == "GET" and len(parts) == 3 and parts[0] == "files" and parts[2] == "content":
            with self._lock:
                found = self._files.get(parts[1])
            if found is None:
                return 404, _error(f"No such File object: {parts[1]}"), None
            return 200, None, found[1]
        if method == "POST" and parts == ["batches"]:
            return self._create(json.loads(body or b"{}"))
        if method == "GET" and len(parts) == 2 and parts[0] == "batches":
            return self._retrieve(parts[1])
        if method == "POST" and len(parts) == 3 and parts[0] == "batches" and parts[2] == "cancel":
            return self._cancel(parts[1])
        if method == "POST" and parts == ["chat", "completions"]:
            request = json.loads(body or b"{}")
            with self._lock:
                self.chat_requests.append(request)
            return 200, self._completion(request, f"chatcmpl-live-{len(self.chat_requests)}"), None
        return 404, _error(f"no route for {method} {path}"), None

    def _upload(self, body: bytes, content_type: str) -> tuple[int, Any, None]:
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body
        )
        fields: dict[str, bytes] = {}
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            payload = part.get_payload(decode=True)
            fields[str(name)] = payload if isinstance(payload, bytes) else b""
        if "file" not in fields:
            return 400, _error("no file in the upload"), None
        with self._lock:
            file_id = f"file-{len(self._files) + 1:04d}"
            self._files[file_id] = (fields.get("purpose", b"").decode(), fields["file"])
        return 200, self._file_object(file_id, fields["file"]), None

    def _file_object(self, file_id: str, content: bytes, purpose: str = "batch") -> dict[str, Any]:
        return {
            "id": file_id,
            "object": "file",
            "bytes": len(content),
            "created_at": int(time.time()),
            "filename": f"{file_id}.jsonl",
            "purpose": purpose,
            "status": "processed",
        }

    def _create(self, request: dict[str, Any]) -> tuple[int, Any, None]:
        file_id = request.get("input_file_id")
        with self._lock:
            if file_id not in self._files:
                return 400, _error(f"No such File object: {file_id}"), None
            number = len(self._batches)
            batch_id = f"batch_{number:04d}"
            lines = [line for line in self._files[file_id][1].splitlines() if line.strip()]
            self._batches[batch_id] = {
                "id": batch_id,
                "object": "batch",
                "endpoint": request.get("endpoint"),
                "errors": None,
                "input_file_id": file_id,
                "completion_window": request.get("completion_window", "24h"),
                "status": "validating",
                "output_file_id": None,
                "error_file_id": None,
                "created_at": int(time.time()),
                "request_counts": {"total": len(lines), "completed": 0, "failed": 0},
                "metadata": request.get("metadata"),
            }
            self._steps[batch_id] = 0
            return 200, dict(self._batches[batch_id]), None

    def _retrieve(self, batch_id: str) -> tuple[int, Any, None]:
        with self._lock:
            batch = self._batches.get(batch_id)
            if batch is None:
                return 404, _error(f"No such Batch object: {batch_id}"), None
            if batch["status"] not in FINAL_STATES:
                self._steps[batch_id] += 1
                step = self._steps[batch_id]
                if batch["status"] == "cancelling":
                    self._finish(batch_id, "cancelled")
                elif step > 2 * self.polls:
                    self._finish(batch_id, self.final.get(int(batch_id.split("_")[1]), "completed"))
                elif step > self.polls:
                    batch["status"] = "in_progress"
            return 200, dict(batch), None

    def _cancel(self, batch_id: str) -> tuple[int, Any, None]:
        with self._lock:
            batch = self._batches.get(batch_id)
            if batch is None:
                return 404, _error(f"No such Batch object: {batch_id}"), None
            if batch["status"] not in FINAL_STATES:
                batch["status"] = "cancelling"
            return 200, dict(batch), None

    def _finish(self, batch_id: str, state: str) -> None:
        """Run the batch's requests and write its output and error files (lock held)."""
        batch = self._batches[batch_id]
        content = self._files[batch["input_file_id"]][1]
        lines = [json.loads(line) for line in content.splitlines() if line.strip()]
        too_big = len(content) > self.max_file_bytes
        if state == "failed" or len(lines) > self.max_requests or too_big:
            why = (
                f"The batch input file is larger than the {self.max_file_bytes} byte limit"
                if too_big
                else f"The batch has {len(lines)} requests; the limit is {self.max_requests}"
                if len(lines) > self.max_requests
                else "The batch could not be validated"
            )
            code = "too_many_requests" if len(lines) > self.max_requests else "invalid_file"
            batch.update(status="failed", errors={"data": [{"code": code, "message": why}]})
            return
        cut = len(lines) // 2 if state in ("expired", "cancelled") else len(lines)
        output, errors = [], []
        for number, line in enumerate(lines):
            custom_id = line["custom_id"]
            if number >= cut:
                code = f"batch_{state}"
                text = (
                    "This request could not be executed before the completion window expired."
                    if state == "expired"
                    else "This request was cancelled before it ran."
                )
                errors.append(
                    {"id": f"req_{number}", "custom_id": custom_id, "response": None,
                     "error": {"code": code, "message": text}}
                )  # fmt: skip
                continue
            problem = self.fail(custom_id, line["body"]) if self.fail else None
            if problem is not None:
                errors.append(
                    {"id": f"req_{number}", "custom_id": custom_id,
                     "response": {"status_code": 500, "request_id": f"req_{number}",
                                  "body": _error(problem, "server_error")},
                     "error": None}
                )  # fmt: skip
                continue
            body = self._completion(line["body"], f"chatcmpl-{batch_id}-{number}")
            output.append(
                {"id": f"req_{number}", "custom_id": custom_id,
                 "response": {"status_code": 200, "request_id": f"req_{number}", "body": body},
                 "error": None}
            )  # fmt: skip
        for kind, records in (("output_file_id", output), ("error_file_id", errors)):
            if records:
                file_id = f"file-{len(self._files) + 1:04d}"
                data = "".join(json.dumps(r) + "\n" for r in records).encode()
                self._files[file_id] = ("batch_output", data)
                batch[kind] = file_id
        batch["status"] = state
        batch["request_counts"] = {
            "total": len(lines),
            "completed": len(output),
            "failed": len(errors),
        }

    def _completion(self, request: dict[str, Any], completion_id: str) -> dict[str, Any]:
        content = self.reply(request) if callable(self.reply) else self.reply
        users = [m for m in request.get("messages") or [] if isinstance(m, dict)]
        prompt_words = sum(len(str(m.get("content", "")).split()) for m in users)
        prompt, completion = self.usage or (prompt_words, len(content.split()))
        return {
            "id": completion_id,
            "object": "chat.completion",
            "created": int(time.time()),
            "model": str(request.get("model", "fake-model")),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content},
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
            },
        }
