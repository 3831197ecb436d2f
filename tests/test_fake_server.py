"""FakeOpenAIServer, exercised through litellm's real HTTP client."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import litellm  # noqa: E402
import openai  # noqa: E402

from nbtoolkit.testing import FakeOpenAIServer, Fault  # noqa: E402

litellm.suppress_debug_info = True

# litellm 1.110 lazily imports litellm.llms.github_copilot on the first call; its seven
# ReadOnly TypedDicts make pydantic emit UserWarnings we cannot fix from here.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Item.* on TypedDict class .* using the `ReadOnly` qualifier:UserWarning"
)

T = TypeVar("T")


async def _close_litellm_clients() -> None:
    # litellm caches its async clients across event loops; left open, they leak sockets
    # that surface as ResourceWarnings (errors under -W error) once asyncio.run ends.
    try:
        from litellm.llms.custom_httpx.async_client_cleanup import close_litellm_async_clients
    except ImportError:  # pragma: no cover - moved in a future litellm
        pass
    else:
        await close_litellm_async_clients()
    litellm.in_memory_llm_clients_cache.flush_cache()


def run(awaitable: Awaitable[T]) -> T:
    async def main() -> T:
        try:
            return await awaitable
        finally:
            await _close_litellm_clients()

    return asyncio.run(main())


async def ask(
    server: FakeOpenAIServer, content: str = "hi there", *, timeout: float = 5, **kwargs: Any
) -> Any:
    return await litellm.acompletion(
        model="openai/fake-model",
        api_base=server.base_url,
        api_key="sk-test-not-real",
        messages=[{"role": "user", "content": content}],
        max_retries=0,
        timeout=timeout,
        **kwargs,
    )


async def outcome(server: FakeOpenAIServer, content: str = "hi", **kwargs: Any) -> str:
    """The reply's content, or the name of the litellm exception raised."""
    try:
        response = await ask(server, content, **kwargs)
    except Exception as exc:
        return type(exc).__name__
    if not response.choices:
        return "no choices"
    return str(response.choices[0].message.content)


def causes(exc: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


@pytest.fixture
def make_server() -> Iterator[Any]:
    started: list[FakeOpenAIServer] = []

    def make(**kwargs: Any) -> FakeOpenAIServer:
        server = FakeOpenAIServer(**kwargs).start()
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


def raw(server: FakeOpenAIServer, method: str, path: str, body: bytes | None = None) -> Any:
    """(status, decoded JSON or raw bytes) of one plain urllib request."""
    url = f"http://127.0.0.1:{server.port}{path}"
    request = urllib.request.Request(url, data=body, method=method)
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            status, payload = response.status, response.read()
    except urllib.error.HTTPError as err:
        status, payload = err.code, err.read()
        err.close()
    try:
        return status, json.loads(payload)
    except ValueError:
        return status, payload


# -- replies ---------------------------------------------------------------------------


def test_reply_and_usage_through_litellm() -> None:
    with FakeOpenAIServer(reply="The answer is 42") as server:
        assert server.base_url == f"http://127.0.0.1:{server.port}/v1"
        response = run(ask(server, "what is six times seven"))
        assert response.choices[0].message.content == "The answer is 42"
        assert response.choices[0].finish_reason == "stop"
        assert response.model == "fake-model"
        assert response.usage.prompt_tokens == 5
        assert response.usage.completion_tokens == 4
        assert response.usage.total_tokens == 9
        # max_retries=0: exactly one request per call reaches the server.
        assert server.request_count == 1
        [request] = server.requests
        assert request["model"] == "fake-model"
        assert request["messages"] == [{"role": "user", "content": "what is six times seven"}]
        assert server.faults_served == []


def test_default_reply_echoes_last_user_message_and_usage_can_be_set() -> None:
    with FakeOpenAIServer(prompt_tokens=11, completion_tokens=3) as server:
        response = run(ask(server, "ping pong"))
        assert response.choices[0].message.content == "echo: ping pong"
        assert (response.usage.prompt_tokens, response.usage.completion_tokens) == (11, 3)
        assert response.usage.total_tokens == 14


def test_reply_callable_receives_the_request() -> None:
    seen: list[dict[str, Any]] = []

    def reply(request: dict[str, Any]) -> str:
        seen.append(request)
        return f"t={request['temperature']} n={len(request['messages'])}"

    with FakeOpenAIServer(reply=reply) as server:
        response = run(ask(server, "hello", temperature=0.3))
        assert response.choices[0].message.content == "t=0.3 n=1"
        assert seen == server.requests
        assert seen[0]["messages"][-1]["content"] == "hello"


def test_reply_callable_that_raises_gives_a_500() -> None:
    def reply(request: dict[str, Any]) -> str:
        raise RuntimeError("bug in the test's reply")

    with FakeOpenAIServer(reply=reply) as server:
        with pytest.raises(litellm.InternalServerError, match="bug in the test's reply"):
            run(ask(server))
        assert server.request_count == 1


def test_latency_is_honoured_and_calls_run_concurrently() -> None:
    async def many(server: FakeOpenAIServer) -> list[str]:
        return await asyncio.gather(*(outcome(server, f"q{i}") for i in range(20)))

    with FakeOpenAIServer(latency=0.2) as server:
        replies = run(many(server))
        assert replies == [f"echo: q{i}" for i in range(20)]
        assert server.request_count == 20
        intervals = server.intervals
        overlap = server.max_overlap()
    # Proven on the server's side, whatever the load of the machine: every request was held
    # for the latency, and requests were served at the same time.
    assert len(intervals) == 20 and all(end - start >= 0.2 for start, end in intervals)
    assert overlap >= 2


def test_sustains_64_concurrent_slow_requests() -> None:
    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "x"}]}).encode()
    results: list[int] = []
    lock = threading.Lock()

    with FakeOpenAIServer(latency=0.1) as server:

        def one() -> None:
            status, _ = raw(server, "POST", "/v1/chat/completions", body)
            with lock:
                results.append(status)

        threads = [threading.Thread(target=one) for _ in range(64)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert results == [200] * 64
        assert server.request_count == 64
        # Served side by side (serially 64 requests would never overlap).
        assert server.max_overlap() >= 8


# -- faults ----------------------------------------------------------------------------


def test_429_is_a_rate_limit_error_with_retry_after() -> None:
    with FakeOpenAIServer(faults={0: Fault.RATE_LIMIT}, retry_after=0.2) as server:
        with pytest.raises(litellm.RateLimitError) as info:
            run(ask(server))
        exc = info.value
        assert exc.status_code == 429
        # Both the httpx response and litellm's copy of the headers carry it.
        assert exc.response.headers["retry-after"] == "0.2"
        assert exc.litellm_response_headers["retry-after"] == "0.2"  # type: ignore[attr-defined]
        assert "Rate limit reached" in str(exc)
        assert server.request_count == 1
        assert server.faults_served == [(0, Fault.RATE_LIMIT)]


def test_retry_after_whole_seconds_has_no_decimal_point() -> None:
    with FakeOpenAIServer(faults={0: "429"}) as server:
        with pytest.raises(litellm.RateLimitError) as info:
            run(ask(server))
        assert info.value.response.headers["retry-after"] == "1"


@pytest.mark.parametrize(
    ("kind", "expected", "status"),
    [
        ("500", litellm.InternalServerError, 500),
        ("503", litellm.ServiceUnavailableError, 503),
    ],
)
def test_server_errors(kind: str, expected: type[Exception], status: int) -> None:
    with FakeOpenAIServer(faults={0: kind}) as server:
        with pytest.raises(expected) as info:
            run(ask(server))
        assert info.value.status_code == status  # type: ignore[attr-defined]
        assert server.request_count == 1
        assert server.faults_served == [(0, Fault(kind))]


def test_hang_is_a_timeout() -> None:
    with FakeOpenAIServer(faults={0: Fault.HANG}, hang_seconds=10) as server:
        with pytest.raises(litellm.Timeout):  # a hang of 10 s ends as a timeout of 1 s
            run(ask(server, timeout=1))
        assert server.request_count == 1
        assert server.intervals == []  # the server was still holding it


def test_reset_is_a_connection_error() -> None:
    with FakeOpenAIServer(faults={0: Fault.RESET}) as server:
        # litellm 1.110 turns openai's APIConnectionError (which carries no status code)
        # into an OpenAIError(500), so it surfaces as InternalServerError.
        with pytest.raises((litellm.APIConnectionError, litellm.InternalServerError)) as info:
            run(ask(server))
        chain = causes(info.value)
        assert any(isinstance(e, openai.APIConnectionError) for e in chain)
        assert any(isinstance(e, ConnectionResetError) for e in chain)
        assert server.request_count == 1
        # The next call gets a fresh connection and a normal answer.
        assert run(outcome(server)) == "echo: hi"


def test_malformed_body() -> None:
    with FakeOpenAIServer(faults={0: "malformed"}) as server:
        with pytest.raises(litellm.InternalServerError) as info:
            run(ask(server))
        assert any(isinstance(e, json.JSONDecodeError) for e in causes(info.value))
        assert server.request_count == 1


def test_empty_choices_is_not_an_error_for_litellm() -> None:
    with FakeOpenAIServer(faults={0: "empty_choices"}) as server:
        response = run(ask(server))
        assert response.choices == []
        assert response.usage.completion_tokens == 0
        assert server.faults_served == [(0, Fault.EMPTY_CHOICES)]


def test_scripted_faults_by_index() -> None:
    async def five(server: FakeOpenAIServer) -> list[str]:
        return [await outcome(server, f"q{i}") for i in range(5)]

    with FakeOpenAIServer(faults={0: "429", 1: Fault.SERVER_ERROR, 3: "503"}) as server:
        assert run(five(server)) == [
            "RateLimitError",
            "InternalServerError",
            "echo: q2",
            "ServiceUnavailableError",
            "echo: q4",
        ]
        assert server.request_count == 5
        assert server.faults_served == [
            (0, Fault.RATE_LIMIT),
            (1, Fault.SERVER_ERROR),
            (3, Fault.UNAVAILABLE),
        ]
        assert [r["messages"][0]["content"] for r in server.requests] == [f"q{i}" for i in range(5)]
        server.reset()
        assert (server.request_count, server.requests, server.faults_served) == (0, [], [])
        assert run(outcome(server)) == "RateLimitError"


def test_scripted_faults_by_callable_beat_fault_rate() -> None:
    def faults(index: int, request: dict[str, Any]) -> str | None:
        return "500" if "boom" in request["messages"][-1]["content"] else None

    async def three(server: FakeOpenAIServer) -> list[str]:
        return [await outcome(server, c) for c in ("boom", "fine", "boom again")]

    with FakeOpenAIServer(faults=faults, fault_rate=1.0, fault_kinds=["429"]) as server:
        assert run(three(server)) == [
            "InternalServerError",
            "RateLimitError",
            "InternalServerError",
        ]
        assert server.faults_served == [
            (0, Fault.SERVER_ERROR),
            (1, Fault.RATE_LIMIT),
            (2, Fault.SERVER_ERROR),
        ]


def test_fault_rate_is_reproducible_with_a_seed() -> None:
    kinds = ("429", "500", "503", "malformed", "empty_choices")

    async def calls(server: FakeOpenAIServer, n: int) -> list[str]:
        # Concurrent on purpose: the draws follow request order, not thread timing.
        return list(await asyncio.gather(*(outcome(server) for _ in range(n))))

    def faults_for(seed: int) -> list[tuple[int, Fault]]:
        with FakeOpenAIServer(fault_rate=0.4, seed=seed, fault_kinds=kinds) as server:
            results = run(calls(server, 30))
            assert server.request_count == 30
            served = sorted(server.faults_served)
            assert len(served) == sum(r != "echo: hi" for r in results)
            server.reset()
            run(calls(server, 30))
            assert sorted(server.faults_served) == served, "reset() restarts the sequence"
            return served

    first = faults_for(seed=7)
    assert 0 < len(first) < 30
    assert {kind for _, kind in first} <= {Fault(k) for k in kinds}
    assert faults_for(seed=7) == first
    assert faults_for(seed=8) != first


def test_stop_returns_quickly_with_a_hang_in_flight() -> None:
    async def scenario() -> tuple[bool, BaseException | None]:
        server = FakeOpenAIServer(faults={0: "hang"}, hang_seconds=30).start()
        task = asyncio.ensure_future(ask(server, timeout=20))
        deadline = time.perf_counter() + 5
        while server.request_count == 0 and not task.done() and time.perf_counter() < deadline:
            await asyncio.sleep(0.01)
        assert server.request_count == 1
        server.stop()
        # stop() did not wait out the 30 s hang: the client is still waiting when it returns,
        # and its request then ends with the closed connection, long before its own timeout.
        still_waiting = not task.done()
        try:
            await asyncio.wait_for(task, 5)
        except Exception as exc:
            return still_waiting, exc
        return still_waiting, None

    still_waiting, error = run(scenario())
    assert still_waiting
    # The server closes the connection without an answer: a connection error, which
    # litellm 1.110 reports as InternalServerError (see test_reset_is_a_connection_error).
    assert isinstance(error, (litellm.APIConnectionError, litellm.InternalServerError))


def test_start_stop_without_with() -> None:
    server = FakeOpenAIServer(reply="x")
    with pytest.raises(RuntimeError):
        _ = server.port
    server.start()
    try:
        with pytest.raises(RuntimeError):
            server.start()
        assert run(outcome(server)) == "x"
    finally:
        server.stop()
    server.stop()  # idempotent
    assert "stopped" in repr(server)


# -- plain HTTP ------------------------------------------------------------------------


def test_other_endpoints() -> None:
    chat = json.dumps({"model": "m", "messages": [{"role": "user", "content": "a b"}]}).encode()
    with FakeOpenAIServer() as server:
        status, body = raw(server, "GET", "/v1/models")
        assert status == 200
        assert body["object"] == "list" and body["data"][0]["id"] == "fake-model"

        status, body = raw(server, "POST", "/chat/completions", chat)
        assert status == 200
        assert body["object"] == "chat.completion"
        assert body["choices"][0]["message"] == {"role": "assistant", "content": "echo: a b"}

        assert raw(server, "GET", "/v1/nothing")[0] == 404
        assert raw(server, "POST", "/v1/embeddings", b"{}")[0] == 404
        assert raw(server, "DELETE", "/v1/chat/completions")[0] == 404

        status, body = raw(server, "POST", "/v1/chat/completions", b"not json")
        assert status == 400 and body["error"]["type"] == "invalid_request_error"

        stream = json.dumps(
            {
                "model": "m",
                "messages": [{"role": "user", "content": "a b"}],
                "stream": True,
                "stream_options": {"include_usage": True},
            }
        ).encode()
        status, body = raw(server, "POST", "/v1/chat/completions", stream)
        assert status == 200
        events = [line[6:] for line in body.decode().splitlines() if line.startswith("data: ")]
        assert events[-1] == "[DONE]"
        chunks = [json.loads(e) for e in events[:-1]]
        text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
        assert text == "echo: a b"
        assert chunks[-1]["usage"]["completion_tokens"] == 3


def test_bad_arguments_fail_at_construction() -> None:
    with pytest.raises(ValueError, match="unknown fault kind"):
        FakeOpenAIServer(faults={0: "418"})
    with pytest.raises(ValueError, match="unknown fault kind"):
        FakeOpenAIServer(fault_kinds=["teapot"])
    with pytest.raises(ValueError):
        FakeOpenAIServer(fault_rate=1.5)
    assert Fault("429") is Fault.RATE_LIMIT and Fault.HANG == "hang"


def test_importing_it_does_not_import_heavy_dependencies() -> None:
    root = Path(__file__).resolve().parents[1]
    # nbtoolkit/__init__ may import what it likes; only testing.py itself is checked.
    code = (
        "import sys, nbtoolkit\n"
        "before = set(sys.modules)\n"
        "import nbtoolkit.testing\n"
        "heavy = ('IPython', 'ipywidgets', 'papermill', 'litellm', 'openai', 'httpx')\n"
        "new = [m for m in set(sys.modules) - before if m.split('.')[0] in heavy]\n"
        "assert not new, new\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=root, check=True, timeout=60)
