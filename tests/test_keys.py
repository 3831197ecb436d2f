"""Keys go only where they were meant to go, and no sink ever shows one.

The routing tests read the ``Authorization`` header the local server received. The canary
tests put a secret where a careless provider or user would (an echoed reply, a long error
cut at a length limit, credentials in a URL, a header value) and look for any piece of it in
every place nbtoolkit writes or shows text.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pandas as pd
import pytest

import nbtoolkit as nbt
from nbtoolkit import providers
from nbtoolkit.cache import cache_dir
from nbtoolkit.errors import clip, public, redact
from nbtoolkit.testing import FakeOpenAIServer

from .conftest import CANARY_KEY

LOCAL_SECRET = "local-secret-5a4b3c2d1e0f"
PLACEHOLDER = f"Bearer {providers.NO_KEY}"


def pieces(secret: str, size: int = 12) -> list[str]:
    """Every run of ``size`` characters of ``secret``: a key cut short still leaks these."""
    return [secret[i : i + size] for i in range(len(secret) - size + 1)]


def leaked(text: str, secret: str = CANARY_KEY) -> bool:
    return any(p in text for p in pieces(secret))


@pytest.fixture(autouse=True)
def _keys(monkeypatch: pytest.MonkeyPatch) -> None:
    # The user's real provider keys are set: none of them may reach another host.
    monkeypatch.setenv("OPENAI_API_KEY", CANARY_KEY)
    monkeypatch.setenv("ANTHROPIC_API_KEY", CANARY_KEY + "-anthropic")
    monkeypatch.setenv("LOCAL_KEY", LOCAL_SECRET)


# ------------------------------------------------------------------------------ routing


def test_a_model_on_its_own_host_is_never_sent_the_providers_key() -> None:
    with FakeOpenAIServer(reply="ok") as server:
        res = nbt.orchestrate(
            "hi",
            [
                nbt.Model("openai/self-hosted", api_base=server.base_url),
                # api_base slipped in through extra= is routed the same way
                nbt.Model("openai/other", extra={"api_base": server.base_url}),
                nbt.Model("anthropic/claude-proxy", api_base=server.base_url),
            ],
            cache="off",
            audit=False,
        )
    assert res.outputs["output"].iloc[:2].tolist() == ["ok", "ok"]
    assert len(server.authorizations) >= 2
    for header in server.authorizations:
        assert header is None or not leaked(header), header
    assert server.authorizations[:2] == [PLACEHOLDER, PLACEHOLDER]


@pytest.mark.parametrize("variable", ["OPENAI_BASE_URL", "OPENAI_API_BASE"])
def test_a_host_named_by_the_environment_is_not_sent_the_providers_key(
    variable: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """litellm reads OPENAI_BASE_URL when a call names no api_base: that host is another host
    too, and gets no OPENAI_API_KEY."""
    with FakeOpenAIServer(reply="ok") as server:
        monkeypatch.setenv(variable, server.base_url)
        res = nbt.orchestrate("hi", ["gpt-4o-mini"], cache="off", audit=False)
    assert res.outputs["output"].tolist() == ["ok"]
    assert server.authorizations == [PLACEHOLDER]


def test_the_named_key_goes_to_its_host_and_a_fallback_on_another_host_gets_none() -> None:
    with (
        FakeOpenAIServer(reply="never", faults=lambda i, r: "500") as primary,
        FakeOpenAIServer(reply="42") as backup,
    ):
        model = nbt.Model(
            "openai/primary",
            api_base=primary.base_url,
            api_key_env="LOCAL_KEY",
            fallbacks=[nbt.Model("openai/backup", api_base=backup.base_url)],
        )
        res = nbt.orchestrate("hi", [model], retries=1, cache="off", audit=False)
    assert res.outputs["output"].iloc[0] == "42"
    assert primary.authorizations == [f"Bearer {LOCAL_SECRET}"] * 2
    assert backup.authorizations == [PLACEHOLDER]


def test_a_local_server_without_auth_needs_no_key_at_all(monkeypatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY")
    with FakeOpenAIServer(reply="fine") as server:
        res = nbt.orchestrate(
            "hi", [nbt.Model("openai/m", api_base=server.base_url)], cache="off", audit=False
        )
    assert res.outputs["output"].iloc[0] == "fine"
    assert server.authorizations == [PLACEHOLDER]


@pytest.mark.parametrize(
    ("model", "api_base", "own"),
    [
        ("gpt-4o-mini", "https://api.openai.com/v1", True),
        ("openai/gpt-4o-mini", "https://api.openai.com/v1/", True),
        ("gpt-4o-mini", "http://api.openai.com/v1", False),  # the key never goes in clear
        ("gpt-4o-mini", "https://api.openai.com.attacker.io/v1", False),
        ("gpt-4o-mini", "https://my-gateway.example.com/v1", False),
        ("anthropic/claude-3-5-haiku-latest", "https://api.anthropic.com", True),
        ("anthropic/claude-3-5-haiku-latest", "https://api.openai.com/v1", False),
        ("azure/my-deployment", "https://team.openai.azure.com", True),
    ],
)
def test_own_endpoint_is_the_providers_own_host_over_https(model, api_base, own) -> None:
    m = nbt.Model(model, api_base=api_base)
    assert providers.own_endpoint(m, api_base) is own
    expected = None if own else providers.NO_KEY
    assert providers.api_key_for(m, m.litellm_kwargs()) == expected
    named = nbt.Model(model, api_base=api_base, api_key_env="LOCAL_KEY")
    assert providers.api_key_for(named, named.litellm_kwargs()) == LOCAL_SECRET
    # No api_base: litellm takes the provider's own key for the provider's own endpoint.
    bare = nbt.Model(model)
    assert providers.api_key_for(bare, bare.litellm_kwargs()) is None


# ---------------------------------------------------------------------------- redaction


def test_redact_catches_cut_keys_url_credentials_bearer_tokens_and_key_shapes() -> None:
    assert redact(f"key {CANARY_KEY} end") == "key *** end"
    cut = f"error: invalid key {CANARY_KEY}"[:30]
    assert not leaked(redact(cut), CANARY_KEY[:20]) and redact(cut).endswith("***")
    assert redact(CANARY_KEY[-14:] + " was the tail") == "*** was the tail"
    assert redact("https://me:hunter2@gw.example/v1") == "https://***@gw.example/v1"
    assert redact("Authorization: Bearer abc.def-ghi_jkl") == "Authorization: Bearer ***"
    assert redact('{"authorization": "Basic dXNlcjpwYXNz"}') == '{"authorization": "Basic ***"}'
    assert redact("sent Bearer 0a1b2c3d4e5f6a7b8c9d") == "sent Bearer ***"
    ordinary = "A basic question for the bearer of good news: see https://example.com/a@b"
    assert redact(ordinary) == ordinary
    assert redact("GET /v1?api_key=abcdef123&x=1") == "GET /v1?api_key=***&x=1"
    other = "sk-proj-" + "Q" * 40  # a key of a provider whose variable is not even set
    assert redact(f"echo {other}") == "echo ***"
    # Whole values only for a secret that is a path: its pieces are ordinary text.
    assert redact("ordinary text about sk-") == "ordinary text about sk-"
    long = "x" * 290 + CANARY_KEY
    assert not leaked(clip(long, 300)) and clip(long, 300) == "x" * 290 + "***"
    assert public({"extra_headers": {"X-Token": "plain"}, "api_base": "https://a:b@h"}) == {
        "extra_headers": {"X-Token": "***"},
        "api_base": "https://***@h",
    }


def _echo_or_fail(request: dict) -> str:
    text = request["messages"][-1]["content"]
    if text.startswith("fail"):
        # A provider error long enough that the error row's length limit cuts into the key:
        # one of the paddings puts the cut inside it, whatever litellm's prefix.
        raise RuntimeError("x" * int(text.split()[1]) + f" bad key {CANARY_KEY}")
    return f"Your key is {CANARY_KEY}, the answer is 7"


def test_canary_reaches_no_sink(tmp_path) -> None:
    """An echoed key, a key cut by the error-row limit, a header value and URL credentials:
    nowhere in the frames, their CSV, the audit log, the cache, the manifest, the display."""
    prompts = ["echo"] + [f"fail {n}" for n in range(180, 300, 7)]
    with FakeOpenAIServer(reply=_echo_or_fail) as server:
        model = nbt.Model(
            "openai/echo",
            api_base=server.base_url,
            api_key_env="LOCAL_KEY",
            extra_headers={"X-Team-Token": "header-secret-8c7b6a5d4e"},
        )
        res = nbt.orchestrate(
            "{q}", [model], data=pd.DataFrame({"q": prompts}), retries=0, extract="number"
        )
    res.outputs.to_csv(tmp_path / "outputs.csv")
    res.consensus.to_csv(tmp_path / "consensus.csv")
    shown = [
        repr(res),
        res._repr_html_(),
        json.dumps(res.meta, default=str),
        " ".join(res.warnings),
        res.outputs.to_string(),
        repr(model),
    ]
    written = [p for p in [*tmp_path.rglob("*"), *cache_dir().rglob("*")] if p.is_file()]
    assert {"audit.jsonl", "cache.sqlite"} <= {p.name for p in written}
    with sqlite3.connect(cache_dir() / "cache.sqlite") as conn:
        shown.append("\n".join(conn.iterdump()))
    texts = shown + [p.read_bytes().decode("utf-8", "replace") for p in written]
    for secret in (CANARY_KEY, LOCAL_SECRET, "header-secret-8c7b6a5d4e"):
        for text in texts:
            assert not leaked(text, secret), (secret, text[:200])
    # The echoed key is not read as the answer either.
    assert res.outputs["answer"].iloc[0] == "7"
    assert res.outputs["error"].iloc[1:].str.contains("RuntimeError").all()


def test_a_key_pasted_into_the_prompt_or_the_data_is_in_no_frame_or_display(tmp_path) -> None:
    with FakeOpenAIServer(reply="ok") as server:
        res = nbt.orchestrate(
            f"{{q}} (key {CANARY_KEY})",
            [nbt.Model("openai/x", api_base=server.base_url)],
            data=pd.DataFrame({"q": ["a", f"b {CANARY_KEY}"], "n": [1, 2]}),
            cache="off",
            audit=False,
        )
    res.consensus.to_csv(tmp_path / "consensus.csv")
    texts = [
        repr(res),
        res._repr_html_(),
        res.consensus.to_string(),
        res.prompt,
        (tmp_path / "consensus.csv").read_text(encoding="utf-8"),
    ]
    for text in texts:
        assert not leaked(text), text[:300]
        assert not leaked(text, CANARY_KEY[-16:]), text[:300]
    assert res.consensus["n"].tolist() == [1, 2]  # other columns are left as they are


def test_url_credentials_are_in_no_message_manifest_or_repr() -> None:
    with FakeOpenAIServer(reply="ok") as server:
        base = server.base_url.replace("http://", "http://me:pw-9a8b7c6d5e4f@")
        model = nbt.Model("openai/x", api_base=base)
        try:
            res = nbt.orchestrate("hi", [model], retries=0, cache="off", audit=False)
        except nbt.RunFailedError as exc:  # aiohttp refuses credentials in the URL
            assert "pw-9a8b7c6d5e4f" not in str(exc)
            res = exc.result  # type: ignore[assignment]
    assert "pw-9a8b7c6d5e4f" not in repr(model) + json.dumps(res.meta) + repr(res)
    assert "***@127.0.0.1" in json.dumps(res.meta)


def test_our_error_messages_never_carry_a_key() -> None:
    with pytest.raises(nbt.ModelError) as info:
        nbt.Model("openai/x", api_key_env=CANARY_KEY)
    assert not leaked(str(info.value)) and "never the key itself" in str(info.value)
    assert not leaked(str(nbt.ConfigError(f"bad value {CANARY_KEY[:20]}")), CANARY_KEY[:20])


def test_report_notebook_html_and_csv_writers_redact(tmp_path) -> None:
    nbformat = pytest.importorskip("nbformat")
    pytest.importorskip("nbconvert")
    from nbtoolkit import report
    from nbtoolkit.report.analysis import save_frames

    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("print(key)")
    cell.outputs = [
        nbformat.v4.new_output("stream", name="stdout", text=f"the key is {CANARY_KEY}\n"),
        nbformat.v4.new_output(
            "error", ename="AuthenticationError", evalue=f"bad {CANARY_KEY}", traceback=[]
        ),
    ]
    nb.cells.append(cell)
    nb.metadata["nbtoolkit"] = {"manifest": {"api_base": "https://u:pw-1a2b3c4d5e6f@h"}}
    report.write_notebook(nb, tmp_path / "r.ipynb")
    page = report.to_html(nb)
    with FakeOpenAIServer(reply=f"echo {CANARY_KEY} 3") as server:
        res = nbt.orchestrate(
            "{q}",
            [nbt.Model("openai/m", api_base=server.base_url)],
            data=pd.DataFrame({"q": ["a"]}),
            cache="off",
            audit=False,
        )
    paths = save_frames([("run", res)], str(tmp_path / "frames"))
    texts = [page, (tmp_path / "r.ipynb").read_text()]
    texts += [Path(p).read_text(encoding="utf-8") for p in paths.values()]
    assert "the key is ***" in texts[0] and "the key is ***" in texts[1]
    for text in texts:
        assert not leaked(text) and "pw-1a2b3c4d5e6f" not in text


def test_run_level_header_values_stay_out_of_the_manifest_and_the_log() -> None:
    with FakeOpenAIServer(reply="ok") as server:
        res = nbt.orchestrate(
            "hi",
            [nbt.Model("openai/m", api_base=server.base_url)],
            extra_headers={"X-Api-Token": "run-header-7f6e5d4c3b2a"},
        )
    assert "run-header-7f6e5d4c3b2a" not in json.dumps(res.meta)
    assert res.meta["params"]["extra_headers"] == {"X-Api-Token": "***"}
    assert "run-header-7f6e5d4c3b2a" not in (cache_dir() / "audit.jsonl").read_text()


def test_a_secret_set_after_a_text_was_shown_is_hidden_the_next_time(monkeypatch) -> None:
    """redact remembers short texts it has seen; a new secret must not be missed for that."""
    from nbtoolkit.errors import protect, redact

    text = "model says plainvalue-4417x here"
    assert redact(text) == text
    monkeypatch.setenv("LATE_TOKEN", "plainvalue-4417x")
    assert "plainvalue-4417x" not in redact(text)
    monkeypatch.delenv("LATE_TOKEN")
    other = "and then anothervalue-99z2 appears"
    assert redact(other) == other
    protect("anothervalue-99z2")
    assert "anothervalue-99z2" not in redact(other)


def test_a_header_or_url_credential_echoed_back_is_hidden_everywhere(tmp_path) -> None:
    """Header values and api_base query credentials were hidden beside their names only;
    a server echoing the bare value put it in the frames, the audit log and the cache."""
    import nbtoolkit as nbt
    from nbtoolkit.cache import cache_dir
    from nbtoolkit.testing import FakeOpenAIServer

    header, query = "hdrvalue-ZZ99887766", "qsecret-C0ffee12345"
    with FakeOpenAIServer(reply=f"echo {header} and {query}") as server:
        model = nbt.Model(
            "openai/b",
            api_base=f"{server.base_url}?auth_token={query}",  # a gateway keyed by its URL
            extra_headers={"X-Thing": header},
        )
        res = nbt.orchestrate("hi", [model], audit=str(tmp_path / "audit.jsonl"))
        res.save(tmp_path / "run.nbt")
    assert res.outputs["error"].isna().all()  # the query is kept after the path
    written = [p for p in [*tmp_path.rglob("*"), *cache_dir().rglob("*")] if p.is_file()]
    for text in [
        repr(res.outputs),
        repr(res.meta),
        *(p.read_bytes().decode(errors="replace") for p in written),
    ]:
        assert header not in text and query not in text


@pytest.mark.parametrize(
    "name", ["auth_token", "private_token", "access-token", "x-api-key", "client_secret", "pass"]
)
def test_every_query_parameter_named_for_a_credential_is_hidden(name) -> None:
    from nbtoolkit.errors import redact

    assert redact(f"https://h/v1?page=2&{name}=s3cr3tvalue&x=1") == (
        f"https://h/v1?page=2&{name}=***&x=1"
    )
    assert redact("https://h/v1?page=2&keyboard=qwerty") == "https://h/v1?page=2&keyboard=qwerty"


def test_a_cached_reply_holding_a_value_that_became_a_secret_is_shown_hidden(
    tmp_path, monkeypatch
) -> None:
    from nbtoolkit.testing import FakeOpenAIServer

    value = "later-token-Kq81Xz0Wm3"
    with FakeOpenAIServer(reply=f"the code is {value}") as server:
        model = nbt.Model("openai/x", api_base=server.base_url)
        first = nbt.orchestrate("hi", [model], cache_path=str(tmp_path / "c.sqlite"))
        assert value in first.outputs["output"].iloc[0]  # not a secret yet
        monkeypatch.setenv("SERVICE_TOKEN", value)
        again = nbt.orchestrate("hi", [model], cache_path=str(tmp_path / "c.sqlite"))
    assert again.outputs["cached"].all()
    assert value not in again.outputs["output"].iloc[0]


@pytest.mark.parametrize(
    "key",
    [
        "sk-ant-api03-" + "Ab3" * 8,
        "AIza" + "Sy9" * 11,
        "ghp_" + "a1B" * 8,
        "gho_" + "a1B" * 8,
        "ghu_" + "a1B" * 8,
        "ghs_" + "a1B" * 8,
        "github_pat_" + "a1B" * 8,
        "hf_" + "a1B" * 11,
        "xoxb-" + "123-abc" * 3,
        "AKIA" + "ABCDEFGH23456789",
        "gsk_" + "a1B" * 8,
        "pplx-" + "a1B" * 8,
        "r8_" + "a1B" * 8,
    ],
)
def test_every_key_shape_is_hidden_in_a_long_reply(key: str) -> None:
    # A reply is scanned for key shapes only where one could start: none may slip past that,
    # at the start, inside, or at the end of a text longer than the memo keeps.
    filler = "Eight minus three is five; though high, the weight-lifting took 42 steps. " * 10
    for text in (f"{key} {filler}", f"{filler}({key}) {filler}", f"{filler}{key}"):
        hidden = redact(text)
        assert key not in hidden and key[:12] not in hidden and "***" in hidden


def test_another_key_that_starts_like_the_secret_is_hidden_whole(monkeypatch) -> None:
    # The environment's key and a second key of the same provider share their first eight
    # characters: hiding that shared start must not leave the rest of the second one out.
    mine = "sk-proj-" + "Zq7x9" * 8
    other = "sk-proj-" + "Yw3k8" * 8
    monkeypatch.setenv("MY_PROVIDER_KEY", mine)
    for text in (f"keys {mine} and {other}.", f"{other}", f"half {mine[:20]} then {other}"):
        hidden = redact(text)
        assert other[8:] not in hidden and mine[8:20] not in hidden, hidden
    assert redact(f"keys {mine} and {other}.") == "keys *** and ***."


def test_a_key_protected_while_another_thread_reads_the_secrets_is_hidden_after(
    monkeypatch,
) -> None:
    # Another thread's run protects its key while this one is making the list of secrets
    # (simulated: the protect happens inside the sort that ends the list). The list made
    # without the key must not be kept: the next redact hides it.
    from nbtoolkit import errors

    # Protected values stay for the process: this test's go with it (a piece of one, its
    # first or last 8 characters, is hidden wherever it appears, in later tests too).
    monkeypatch.setattr(errors, "_PROTECTED", set(errors._PROTECTED))
    key = "zz-new-service-key-Qx7vL2pR9mTk"
    errors.protect("a-value-never-seen-Hw4nZ8cJ3bYe")  # the list is made again on next read
    real = sorted

    def meanwhile(*args, **kwargs):
        errors.protect(key)
        monkeypatch.setattr(errors, "sorted", real, raising=False)
        return real(*args, **kwargs)

    monkeypatch.setattr(errors, "sorted", meanwhile, raising=False)
    errors.redact("anything")
    errors.protect(key)  # the next run protects it again: nothing new
    assert redact(f"echo {key}") == "echo ***"
