"""``estimate``: calls, prompt tokens and a cost range per model, before anything is sent."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from nbtoolkit.cache import Cache, Entry
from nbtoolkit.estimates import DEFAULT_MAX_TOKENS, Estimate, estimate
from nbtoolkit.providers import sim
from nbtoolkit.spec import Model
from nbtoolkit.testing import FakeOpenAIServer

PROMPT = "{question}\nAnswer with a number."


def questions(n: int) -> pd.DataFrame:
    return pd.DataFrame(sim.question_bank()[:n])


def test_simulated_models_are_counted_as_they_bill() -> None:
    data = questions(5)
    est = estimate(
        PROMPT, ["sim/oracle-large", "sim/swift-mini"], data=data, samples=2, max_tokens=100
    )
    assert isinstance(est, Estimate)
    assert list(est.columns) == [
        "calls",
        "prompt_tokens",
        "typical_completion_tokens",
        "max_tokens",
        "cost_low_usd",
        "cost_high_usd",
        "price_known",
    ]
    prompts = [PROMPT.replace("{question}", q) for q in data["question"]]
    tokens = 2 * sum(sim.count_tokens(p) for p in prompts)
    oracle = sim.PROFILES["oracle-large"]
    row = est.loc["sim/oracle-large"]
    assert row["calls"] == 10 and row["prompt_tokens"] == tokens and row["max_tokens"] == 100
    assert row["cost_low_usd"] == pytest.approx(tokens * oracle.input_cost_per_token)
    assert row["cost_high_usd"] == pytest.approx(
        tokens * oracle.input_cost_per_token + 10 * 100 * oracle.output_cost_per_token
    )
    assert bool(row["price_known"])
    assert "Estimate: 20 calls to 2 model(s)" in repr(est)


def test_no_max_tokens_uses_the_stated_default_and_says_so() -> None:
    est = estimate("What is 2 + 2?", "sim/swift-mini")
    assert est.loc["sim/swift-mini", "max_tokens"] == DEFAULT_MAX_TOKENS
    assert any(f"assumes {DEFAULT_MAX_TOKENS} completion tokens" in n for n in est.notes)
    # A model's own max_tokens wins over the run's.
    est = estimate("hi", [Model("sim/swift-mini", max_tokens=50)], max_tokens=400)
    assert est.loc["sim/swift-mini", "max_tokens"] == 50


def test_typical_reply_length_comes_from_the_cache_and_unknown_prices_are_named() -> None:
    cache = Cache()
    for i, tokens in enumerate((30, 50)):
        cache.put(Entry(f"k{i}", "openai/priced", "p", "o", 10, tokens, 0.0, 0.1))
    cache.close()
    priced = Model(
        "openai/priced",
        api_base="http://127.0.0.1:9/v1",
        extra={"input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6},
    )
    unpriced = Model("openai/no-such-price", api_base="http://127.0.0.1:9/v1")
    est = estimate(PROMPT, [priced, unpriced], data=questions(3), max_tokens=200)
    row = est.loc["openai/priced"]
    assert row["typical_completion_tokens"] == 40
    prompt_tokens = row["prompt_tokens"]
    assert prompt_tokens > 0  # litellm's token_counter
    assert row["cost_low_usd"] == pytest.approx(prompt_tokens * 1e-6 + 3 * 40 * 2e-6)
    assert row["cost_high_usd"] == pytest.approx(prompt_tokens * 1e-6 + 3 * 200 * 2e-6)
    other = est.loc["openai/no-such-price"]
    assert not bool(other["price_known"])
    assert math.isnan(other["cost_low_usd"]) and math.isnan(other["cost_high_usd"])
    assert any("Price unknown for openai/no-such-price" in n for n in est.notes)
    assert "without openai/no-such-price (price unknown)" in est.summary()
    assert "<table" in est._repr_html_()
    alone = estimate(PROMPT, [unpriced], data=questions(3), max_tokens=200)
    # nothing priced: the cost is unknown, not "at least $0 to $0"
    assert "cost unknown (no price known for openai/no-such-price)" in alone.summary()
    assert "$0 to" not in repr(alone)


def test_nothing_is_sent_or_written(tmp_path) -> None:
    with FakeOpenAIServer() as server:
        estimate(PROMPT, [Model("openai/x", api_base=server.base_url)], data=questions(4))
        assert server.request_count == 0
    assert not (tmp_path / "nbtoolkit-cache").exists()


def test_a_prompt_variable_known_nowhere_is_an_error() -> None:
    from nbtoolkit.errors import TemplateError

    with pytest.raises(TemplateError, match="topic"):
        estimate("Write about {topic}", ["sim/swift-mini"])
