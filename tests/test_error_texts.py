"""Every provider error text that reaches a user names its kind once, and a connection that
cannot be made says so, with the URL and what to check (issue 11)."""

from __future__ import annotations

import re
import socket

import pytest

import nbtoolkit as nbt
from nbtoolkit.providers import describe_error
from nbtoolkit.testing import FakeOpenAIServer


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _error(model: nbt.Model) -> str:
    with pytest.raises(nbt.RunFailedError) as info:
        nbt.orchestrate("hi", [model], retries=0, audit=False, cache="off", timeout=5)
    result = info.value.result
    assert result is not None
    return str(result.outputs["error"].iloc[0])


def _no_doubling(text: str) -> None:
    head = text.split(":", 1)[0]
    assert text.count(head + ":") == 1, text
    assert "litellm." not in text and "Exception - " not in text and "object at 0x" not in text
    assert not re.match(r"(\w+): \1", text), text


@pytest.mark.parametrize("model_id", ["openai/x", "ollama_chat/llama3"])
def test_a_refused_connection_says_cannot_connect_with_the_url(
    model_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_KEY", "sk-test")
    port = _free_port()
    text = _error(
        nbt.Model(model_id, api_base=f"http://127.0.0.1:{port}/v1", api_key_env="FAKE_KEY")
    )
    assert text.startswith("Cannot connect: http://127.0.0.1:"), text
    assert f":{port}" in text and "refused" in text and "api_base" in text
    _no_doubling(text)


@pytest.mark.parametrize("fault", ["429", "500", "503", "reset", "malformed", "empty_choices"])
def test_server_faults_name_their_kind_once(fault: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_KEY", "sk-test")
    with FakeOpenAIServer(faults=lambda i, req: fault) as server:
        base = server.base_url
        text = _error(nbt.Model("openai/x", api_base=base, api_key_env="FAKE_KEY"))
    _no_doubling(text)
    if fault == "reset":
        assert text.startswith("Connection dropped:") and base.split("/v1")[0] in text
    if fault == "malformed":
        assert text.startswith("Bad reply:") and "not JSON" in text


def test_a_json_error_body_is_read_for_its_message() -> None:
    class NotFoundError(Exception):
        pass

    exc = NotFoundError(
        'litellm.NotFoundError: NotFoundError: {"error": {"message": "no route for POST /x"}}'
    )
    assert describe_error(exc) == "NotFoundError: no route for POST /x"


def test_a_timeout_names_the_url_and_the_limit_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_KEY", "sk-test")
    with FakeOpenAIServer(faults=lambda i, req: "hang", hang_seconds=5) as server:
        model = nbt.Model("openai/x", api_base=server.base_url, api_key_env="FAKE_KEY")
        with pytest.raises(nbt.RunFailedError) as info:
            nbt.orchestrate("hi", [model], retries=0, audit=False, cache="off", timeout=1)
    assert info.value.result is not None
    text = str(info.value.result.outputs["error"].iloc[0])
    assert text.startswith("Timeout: http://127.0.0.1:") and "within 1 s" in text, text
    assert text.count("timed out") <= 1
    _no_doubling(text)
