"""A real LiteLLM proxy as the gateway (issue 18): started here once, on 127.0.0.1.

The proxy runs from ``litellm[proxy]`` in a virtual environment of its own
(``nbtoolkit.testing.litellm_proxy``; made on first use, or by ``.ci/run``), with models that
answer through litellm's ``mock_response`` and virtual keys checked by the proxy itself (no
database: see that module). When it cannot be installed here the tests skip, saying why;
with ``NBTOOLKIT_REQUIRE_PROXY=1`` (CI) they fail instead.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

import nbtoolkit as nbt
from nbtoolkit.errors import ConfigError, MissingAPIKeyError
from nbtoolkit.providers import Proxy, retry_hint
from nbtoolkit.testing.litellm_proxy import LiteLLMProxy, ProxyUnavailable

TEAM_KEY = "sk-team-canary-5e4d3c2b1a0f9e8d"
MINI_ONLY_KEY = "sk-mini-only-canary-7a6b5c4d3e2f"
SMALL_BUDGET_KEY = "sk-small-budget-canary-1f2e3d4c5b"
ONE_PER_MINUTE_KEY = "sk-one-per-minute-canary-9d8c7b6a"
KEYS = (TEAM_KEY, MINI_ONLY_KEY, SMALL_BUDGET_KEY, ONE_PER_MINUTE_KEY)
MODELS = {
    "gpt-4o-mini": "The answer is 42.",
    "gpt-4.1-mini": "The answer is 42.",
    "gpt-4o": "I think it is 41.",
}
# gpt-4o costs $0.000225 for one of these calls: the budget lets a few through, then not.
SMALL_BUDGET = 0.0006


@pytest.fixture(scope="session")
def litellm_proxy() -> Iterator[LiteLLMProxy]:
    proxy = LiteLLMProxy(
        models=MODELS,
        keys={
            TEAM_KEY: {},
            MINI_ONLY_KEY: {"models": ["gpt-4o-mini"]},
            SMALL_BUDGET_KEY: {
                "model_max_budget": {"gpt-4o": {"budget_limit": SMALL_BUDGET, "time_period": "1d"}}
            },
            ONE_PER_MINUTE_KEY: {"rpm_limit": 1},
        },
    )
    try:
        proxy.start()
    except ProxyUnavailable as exc:
        if os.environ.get("NBTOOLKIT_REQUIRE_PROXY"):
            pytest.fail(f"the LiteLLM proxy is required here and could not run: {exc}")
        pytest.skip(f"the LiteLLM proxy cannot run on this machine: {exc}")
    yield proxy
    proxy.stop()


@pytest.fixture
def keys(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in zip(("TEAM_KEY", "MINI_KEY", "SMALL_KEY", "RPM_KEY"), KEYS, strict=True):
        monkeypatch.setenv(name, value)


def questions(n: int) -> pd.DataFrame:
    return pd.DataFrame({"q": [f"question {i}" for i in range(n)]})


def run(proxy: Proxy, models: list[str], rows: int, **options: object) -> nbt.RunResult:
    options = {"audit": False, "progress": "none", "cache": "off", **options}
    return nbt.orchestrate(
        "What is {q}? Answer with a number.",
        models,
        data=questions(rows),
        extract="number",
        proxy=proxy,
        **options,  # type: ignore[arg-type]
    )


def no_key_in(res: nbt.RunResult) -> None:
    shown = "\n".join(
        [
            res.outputs.to_csv(),
            res.consensus.to_csv(),
            "\n".join(res.warnings),
            repr(res.meta),
        ]
    )
    for key in KEYS:
        assert key not in shown


def test_fan_out_through_the_proxy_priced_from_litellms_table(
    litellm_proxy: LiteLLMProxy, keys: None
) -> None:
    import litellm

    res = run(
        Proxy(litellm_proxy.url, key_env="TEAM_KEY"),
        [*MODELS, "sim/oracle-large"],
        rows=12,
        concurrency=8,
    )
    out = res.outputs
    online = out[out["model"] != "sim/oracle-large"]
    assert len(online) == 36 and online["error"].isna().all()
    assert set(online.loc[online["model"] == "gpt-4o", "output"]) == {"I think it is 41."}
    assert set(online.loc[online["model"] == "gpt-4o-mini", "output"]) == {"The answer is 42."}
    # The answer each model gave is read and voted on per row: 2 of 3 proxy models say 42.
    assert (res.consensus["answer"].astype(float) == 42).all()
    # Prices are litellm's for the id the proxy was asked for, times the tokens it reported.
    for _, row in online.iterrows():
        price = litellm.model_cost[row["model"]]
        expected = (
            row["prompt_tokens"] * price["input_cost_per_token"]
            + row["completion_tokens"] * price["output_cost_per_token"]
        )
        assert math.isclose(row["cost_usd"], expected, rel_tol=1e-9)
    assert res.meta["transports"]["gpt-4o"] == "aiohttp"
    assert res.meta["transports"]["sim/oracle-large"] == "offline"
    assert res.meta["proxy"] == {"url": litellm_proxy.url, "key_env": "TEAM_KEY"}
    no_key_in(res)


def test_a_model_the_key_may_not_use_is_one_clear_line(
    litellm_proxy: LiteLLMProxy, keys: None
) -> None:
    res = run(Proxy(litellm_proxy.url, key_env="MINI_KEY"), ["gpt-4o-mini", "gpt-4o"], rows=3)
    out = res.outputs.set_index("model")
    assert out.loc["gpt-4o-mini", "error"].isna().all()
    errors = set(out.loc["gpt-4o", "error"])
    assert errors == {
        f"ModelNotAllowedError: the LiteLLM proxy at {litellm_proxy.url} does not let this key "
        "use gpt-4o; `nbtoolkit models --proxy` lists the models your key may use"
    }
    no_key_in(res)


def test_a_spent_budget_is_one_clear_line_and_never_retried(
    litellm_proxy: LiteLLMProxy, keys: None
) -> None:
    # One call at a time, so the proxy counts each call's spend before the next is checked.
    res = run(Proxy(litellm_proxy.url, key_env="SMALL_KEY"), ["gpt-4o"], rows=8, concurrency=1)
    out = res.outputs.sort_values("row")
    answered = out["error"].isna().tolist()
    first_refused = answered.index(False)
    assert first_refused >= 1 and not any(answered[first_refused:])
    assert out["cost_usd"].iloc[:first_refused].sum() >= SMALL_BUDGET - 0.000225
    assert set(out["error"].iloc[first_refused:]) == {
        f"BudgetExceededError: the LiteLLM proxy at {litellm_proxy.url} refused gpt-4o: this "
        "key's budget is spent; ask the proxy's admin to raise it, or wait for the budget "
        "period to reset"
    }
    assert (out["attempts"].iloc[first_refused:] == 1).all()  # asking again would not help
    no_key_in(res)


def test_rate_limited_names_the_wait_the_proxy_asked_for(
    litellm_proxy: LiteLLMProxy, keys: None
) -> None:
    from nbtoolkit.providers import openai_http
    from nbtoolkit.providers.resolve import resolve
    from nbtoolkit.spec import Model

    res = run(
        Proxy(litellm_proxy.url, key_env="RPM_KEY"),
        ["gpt-4o-mini"],
        rows=3,
        retries=0,
        concurrency=1,
    )
    errors = res.outputs.sort_values("row")["error"].tolist()
    assert errors[0] is None
    limited = errors[1]
    assert limited.startswith(f"RateLimitError: the LiteLLM proxy at {litellm_proxy.url} refused")
    assert "it asked to wait 60 s" in limited
    # With retries left, the runner waits what the proxy's Retry-After says (capped): the
    # exception carries it.
    import asyncio

    from nbtoolkit.providers.proxy import use_proxy

    use_proxy(Proxy(litellm_proxy.url, key_env="RPM_KEY"))
    try:
        record = resolve(Model("gpt-4o-mini"))
        messages = [{"role": "user", "content": "again"}]
        with pytest.raises(openai_http.RateLimitError) as caught:
            asyncio.run(openai_http.complete(record, messages, {}, 10))
    finally:
        use_proxy(None)
    assert retry_hint(caught.value) == (True, 60.0)
    no_key_in(res)


def test_models_lists_what_the_proxy_serves_to_the_key(
    litellm_proxy: LiteLLMProxy,
    keys: None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from nbtoolkit.cli import main

    monkeypatch.setenv("NBTOOLKIT_PROXY_URL", litellm_proxy.url)
    monkeypatch.setenv("NBTOOLKIT_PROXY_KEY_ENV", "MINI_KEY")
    assert main(["models", "--proxy"]) == 0
    shown = capsys.readouterr().out
    assert shown.splitlines()[1:] == ["  gpt-4o-mini"]
    monkeypatch.setenv("NBTOOLKIT_PROXY_KEY_ENV", "TEAM_KEY")
    assert main(["models", "--proxy", litellm_proxy.url]) == 0
    shown += capsys.readouterr().out
    assert "  gpt-4o\n" in shown and "  gpt-4.1-mini\n" in shown
    monkeypatch.setenv("WRONG_KEY", "sk-not-a-key-of-this-proxy-123456")
    monkeypatch.setenv("NBTOOLKIT_PROXY_KEY_ENV", "WRONG_KEY")
    assert main(["models", "--proxy"]) == 2
    err = capsys.readouterr().err
    assert "did not accept the key in $WRONG_KEY" in err
    assert not any(k in shown + err for k in (*KEYS, "sk-not-a-key-of-this-proxy-123456"))


def test_the_environment_and_config_name_the_proxy(
    litellm_proxy: LiteLLMProxy, keys: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NBTOOLKIT_PROXY_URL", litellm_proxy.url)
    monkeypatch.setenv("NBTOOLKIT_PROXY_KEY_ENV", "MINI_KEY")
    res = nbt.orchestrate(
        "Say {q}", ["gpt-4o-mini"], data=questions(2), audit=False, progress="none", cache="off"
    )
    assert res.outputs["error"].isna().all()
    assert res.meta["proxy"]["url"] == litellm_proxy.url

    from .conftest import loaded_shell

    shells = loaded_shell(2)
    shell = next(shells)
    try:
        monkeypatch.delenv("NBTOOLKIT_PROXY_URL")
        shell.run_line_magic("config", f"Orchestrate.proxy = {litellm_proxy.url!r}")
        shell.run_line_magic("config", "Orchestrate.proxy_key_env = 'MINI_KEY'")
        shell.run_cell_magic(
            "orchestrate", "-m gpt-4o -m gpt-4o-mini --over questions --no-progress", "{question}"
        )
        out = shell.user_ns["_orch"].outputs.set_index("model")
        assert out.loc["gpt-4o-mini", "error"].isna().all()
        assert out.loc["gpt-4o", "error"].str.startswith("ModelNotAllowedError").all()
    finally:
        next(shells, None)


def test_proxy_mistakes_are_one_line_before_any_call(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="is not a URL"):
        run("proxy:4000", ["gpt-4o-mini"], rows=1)  # type: ignore[arg-type]
    monkeypatch.delenv("UNSET_PROXY_KEY", raising=False)
    with pytest.raises(MissingAPIKeyError, match="UNSET_PROXY_KEY is not set"):
        run(Proxy("http://127.0.0.1:9", key_env="UNSET_PROXY_KEY"), ["gpt-4o-mini"], rows=1)
    with pytest.raises(ConfigError, match="transport='litellm' cannot go through"):
        run(Proxy("http://127.0.0.1:9"), ["gpt-4o-mini"], rows=1, transport="litellm")


@pytest.mark.parametrize(
    "url", ["http://team:pw-s3cret@127.0.0.1:9", "http://127.0.0.1:9/v1?api_key=pw-s3cret"]
)
def test_credentials_in_the_proxy_url_are_refused_and_never_shown(url: str) -> None:
    with pytest.raises(ConfigError, match="holds credentials") as refused:
        Proxy(url)
    assert "pw-s3cret" not in str(refused.value)
    assert "s3cret" not in repr(Proxy("http://127.0.0.1:9", key_env="TEAM_KEY"))


def test_a_model_with_its_own_server_does_not_go_through_the_proxy(tmp_path: Path) -> None:
    from nbtoolkit.testing import FakeOpenAIServer

    with FakeOpenAIServer(reply="7") as server:
        own = nbt.Model("openai/local", api_base=server.base_url)
        res = run(Proxy("http://127.0.0.1:9"), [own], rows=2)  # type: ignore[list-item]
        assert server.request_count == 2
    assert res.outputs["error"].isna().all()
