"""Each model is resolved once, and the lean transport's sessions end with the run."""

from __future__ import annotations

import asyncio
import gc
import math
import warnings

import pandas as pd
import pytest

import nbtoolkit as nbt
from nbtoolkit import providers
from nbtoolkit.testing import FakeOpenAIServer

from .conftest import CANARY_KEY


@pytest.fixture(autouse=True)
def _key(monkeypatch) -> None:
    monkeypatch.setenv("LOCAL_KEY", CANARY_KEY)


def local(server: FakeOpenAIServer, model: str = "openai/gpt-4o-mini", **kw) -> nbt.Model:
    return nbt.Model(model, api_base=server.base_url, api_key_env="LOCAL_KEY", **kw)


def test_litellm_is_asked_about_a_model_once_per_run_not_per_call(monkeypatch) -> None:
    litellm = providers.get_litellm()
    asked = {"provider": 0, "cost": 0}
    real_provider, real_cost = litellm.get_llm_provider, litellm.completion_cost

    def provider(*args, **kw):
        asked["provider"] += 1
        return real_provider(*args, **kw)

    def cost(*args, **kw):
        asked["cost"] += 1
        return real_cost(*args, **kw)

    monkeypatch.setattr(litellm, "get_llm_provider", provider)
    monkeypatch.setattr(litellm, "completion_cost", cost)
    data = pd.DataFrame({"q": [f"question {i}" for i in range(60)]})
    with FakeOpenAIServer(reply="The answer is 2") as server:
        res = nbt.orchestrate("{q}", [local(server)], data=data, cache="off", audit=False)
    assert res.outputs["cost_usd"].gt(0).all() and len(res.outputs) == 60
    assert asked["provider"] <= 5 and asked["cost"] == 0  # not 60 of each


def test_the_record_is_memoised_per_model_and_names_its_transport() -> None:
    model = nbt.Model("openai/gpt-4o-mini", api_base="http://127.0.0.1:9/v1")
    record = providers.resolve(model)
    assert providers.resolve(model) is record
    assert (record.transport, record.api_base, record.wire_model) == (
        "aiohttp",
        "http://127.0.0.1:9/v1",
        "gpt-4o-mini",
    )
    assert record.prices[0] > 0 and record.context_window and record.schema
    forced = nbt.Model("openai/gpt-4o-mini", api_base="http://127.0.0.1:9/v1", transport="litellm")
    assert providers.resolve(forced).transport == "litellm"
    assert providers.resolve(nbt.Model("sim/swift-mini")).transport == "offline"
    unknown = providers.resolve(nbt.Model("groq/nbt-unknown", api_base="http://127.0.0.1:9/v1"))
    assert unknown.transport == "aiohttp" and math.isnan(unknown.prices[0])


def test_a_provider_that_is_not_openai_compatible_stays_on_litellm() -> None:
    for model in ("anthropic/claude-3-5-haiku-latest", "gemini/gemini-1.5-pro"):
        assert providers.resolve(nbt.Model(model)).transport == "litellm"
    # The provider's own host, with no key litellm would find: litellm makes the call.
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("GROQ_API_KEY", raising=False)
        assert providers.resolve(nbt.Model("groq/llama-3.1-8b-instant")).transport == "litellm"


def test_no_session_is_left_open_after_a_run_or_a_lone_call() -> None:
    with FakeOpenAIServer(reply="ok") as server, warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        nbt.orchestrate("hi", [local(server)], cache="off", audit=False)
        model = local(server)
        reply = asyncio.run(
            providers.complete(model, [{"role": "user", "content": "hi"}], {}, None)
        )
        gc.collect()
    assert reply.text == "ok"
    assert not [w for w in seen if "Unclosed" in str(w.message)]
