"""A newcomer's own servers from a cell: --api-base, --api-key-env, and -m naming an nbt.Model."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from IPython.core.error import UsageError

import nbtoolkit as nbt
from nbtoolkit.testing import FakeOpenAIServer

from .conftest import CANARY_KEY, loaded_shell


@pytest.fixture
def shell() -> Iterator[Any]:
    yield from loaded_shell(2)


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeOpenAIServer]:
    monkeypatch.setenv("LOCAL_KEY", CANARY_KEY)
    with FakeOpenAIServer(reply="The answer is 7") as running:
        yield running


def cell(shell: Any, line: str, body: str = "What is 3 + 4?") -> Any:
    return shell.run_cell_magic("orchestrate", line + " --cache off --progress none", body)


def test_api_base_and_key_env_reach_a_local_server(shell: Any, server: FakeOpenAIServer) -> None:
    res = cell(
        shell,
        f"--api-base {server.base_url} --api-key-env LOCAL_KEY -m openai/a -m openai/b "
        "--extract number",
    )
    assert res.models == ["openai/a", "openai/b"]
    assert [str(a) for a in res.consensus["answer"]] == ["7"]
    assert server.request_count == 2
    # the key named by --api-key-env, sent to the host --api-base named
    assert server.authorizations == [f"Bearer {CANARY_KEY}"] * 2


def test_api_base_after_the_models_is_for_every_model(shell: Any, server: FakeOpenAIServer) -> None:
    res = cell(shell, f"-m openai/a,openai/b --api-base {server.base_url} --extract number")
    assert res.outputs["output"].tolist() == ["The answer is 7"] * 2


def test_api_base_is_for_the_models_after_it_only(shell: Any, server: FakeOpenAIServer) -> None:
    res = cell(shell, f"-m oracle --api-base {server.base_url} -m openai/local --extract number")
    assert res.models == ["sim/oracle-large", "openai/local"]
    assert server.request_count == 1  # the simulated model did not go to the server


def test_m_names_a_model_variable(shell: Any, server: FakeOpenAIServer) -> None:
    shell.user_ns["mine"] = nbt.Model(
        "openai/mine", api_base=server.base_url, api_key_env="LOCAL_KEY"
    )
    shell.user_ns["pair"] = [
        nbt.Model("openai/x", api_base=server.base_url, api_key_env="LOCAL_KEY"),
        nbt.Model("openai/y", api_base=server.base_url, api_key_env="LOCAL_KEY"),
    ]
    res = cell(shell, "-m mine -m pair -m swift --extract number")
    assert res.models == ["openai/mine", "openai/x", "openai/y", "sim/swift-mini"]
    assert server.request_count == 3


def test_api_base_on_a_model_variable_is_one_clear_line(
    shell: Any, server: FakeOpenAIServer
) -> None:
    shell.user_ns["mine"] = nbt.Model("openai/mine", api_base=server.base_url)
    with pytest.raises(UsageError, match="is an nbt.Model in the notebook"):
        cell(shell, f"--api-base {server.base_url} -m mine")
    assert server.request_count == 0
