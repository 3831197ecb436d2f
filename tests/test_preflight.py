"""The CLI checks a report's models and keys before it starts a kernel: a missing key is one
line naming every missing variable, exit code 2, and no notebook or HTML written. The key
variables are read from litellm's files (not by importing it), so they must say what
litellm itself says."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from nbtoolkit import Model
from nbtoolkit.providers.env_keys import check_keys, missing_key_variables, static_provider

KEYS = ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GROQ_API_KEY", "GEMINI_API_KEY", "GOOGLE_API_KEY")


def _without_keys() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in KEYS}


def test_a_report_with_missing_keys_names_them_all_and_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "out"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "nbtoolkit.cli",
            "report",
            "compare_models",
            "-p",
            "models",
            "[gpt-4o-mini, sim/swift-mini, claude-3-5-haiku-20241022, groq/llama3-8b-8192]",
            "-o",
            str(out / "report.ipynb"),
        ],
        env=_without_keys(),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, lines  # one line, no traceback, no papermill progress
    for name in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GROQ_API_KEY"):
        assert name in lines[0]
    assert "export OPENAI_API_KEY=..." in lines[0]
    assert not out.exists()  # no notebook, no HTML, not even the folder
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_the_key_check_reads_litellm_without_importing_it(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from nbtoolkit import Model\n"
        "from nbtoolkit.providers.env_keys import missing_key_variables\n"
        "print(missing_key_variables(Model('gpt-4o-mini')), 'litellm' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env=_without_keys(), capture_output=True, text=True
    )
    assert done.stdout.split() == ["('OPENAI_API_KEY',)", "False"], done.stderr


@pytest.mark.parametrize(
    "model_id",
    [
        "gpt-4o-mini",
        "openai/my-model",
        "claude-3-5-haiku-20241022",
        "anthropic/claude-3-5-haiku-20241022",
        "gemini/gemini-2.0-flash",
        "groq/llama3-8b-8192",
        "mistral/mistral-large-latest",
        "together_ai/meta-llama/Llama-3-8b-chat-hf",
        "deepseek/deepseek-chat",
        "fireworks_ai/accounts/fireworks/models/llama-v3-8b-instruct",
        "bedrock/anthropic.claude-3-haiku-20240307-v1:0",
        "azure/my-deployment",
        "xai/grok-2",
        "ollama/llama3",
    ],
)
@pytest.mark.parametrize("keys_set", [False, True])
def test_the_static_key_check_agrees_with_litellm(
    model_id: str, keys_set: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nbtoolkit.providers import get_litellm, litellm_id

    litellm = get_litellm()
    model = Model(model_id)
    routed = litellm_id(model)
    assert static_provider(model_id) == litellm.get_llm_provider(routed)[1]
    for name in litellm.validate_environment(routed)["missing_keys"] if keys_set else ():
        monkeypatch.setenv(name, "x")
    expected = [
        k
        for k in litellm.validate_environment(routed)["missing_keys"]
        if not k.endswith(("_API_BASE", "_BASE_URL", "_ENDPOINT"))
    ]
    assert list(missing_key_variables(model) or ()) == list(dict.fromkeys(expected))


def test_a_server_of_your_own_or_a_named_variable_needs_no_provider_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("MY_TOKEN", raising=False)
    assert missing_key_variables(Model("openai/m", api_base="http://127.0.0.1:8000/v1")) == ()
    assert missing_key_variables(Model("sim/swift-mini")) == ()
    assert missing_key_variables(Model("openai/m", api_key_env="MY_TOKEN")) == ("MY_TOKEN",)
    with pytest.raises(Exception, match="MY_TOKEN") as caught:
        check_keys([Model("gpt-4o-mini"), Model("openai/m", api_key_env="MY_TOKEN")])
    assert dict(caught.value.missing) == {  # type: ignore[attr-defined]
        "gpt-4o-mini": ("OPENAI_API_KEY",),
        "openai/m": ("MY_TOKEN",),
    }
