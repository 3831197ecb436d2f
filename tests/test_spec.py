from __future__ import annotations

import pytest
from pydantic import ValidationError

from nbtoolkit.errors import ModelError
from nbtoolkit.spec import Model, as_models


def test_model_takes_known_options_and_litellm_params() -> None:
    m = Model("gpt-4o-mini", temperature=0.2, weight=2, top_p=0.9, extra={"custom": 1})
    assert m.litellm_kwargs() == {"temperature": 0.2, "top_p": 0.9, "custom": 1}
    assert m.weight == 2.0
    assert repr(Model("x", weight=3)) == "Model('x', weight=3.0)"


def test_model_rejects_unknown_keyword_with_the_fix() -> None:
    with pytest.raises(ModelError, match="unknown keyword argument 'temprature'"):
        Model("gpt-4o-mini", temprature=0.2)


def test_model_refuses_api_key_values() -> None:
    with pytest.raises(ModelError, match="api_key_env"):
        Model("gpt-4o-mini", api_key="sk-123")


def test_model_is_frozen_and_validates() -> None:
    with pytest.raises(ModelError, match="temperature"):
        Model("x", temperature=-1)
    m = Model("x")
    with pytest.raises(ValidationError):
        m.weight = 2  # type: ignore[misc]


def test_models_list_checks() -> None:
    with pytest.raises(ModelError, match="models is empty"):
        as_models([])
    with pytest.raises(ModelError, match="listed twice"):
        as_models(["a", "a"])
    assert [m.label for m in as_models(["a", Model("a", name="a2")])] == ["a", "a2"]
