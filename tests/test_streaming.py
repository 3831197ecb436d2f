"""stream=True: every transport streams, res.outputs gains ttft_s, a cut stream is retried."""

from __future__ import annotations

import math

import pytest

import nbtoolkit as nbt
from nbtoolkit.providers import sim
from nbtoolkit.results import OUTPUT_COLUMNS
from nbtoolkit.streaming import CallStream
from nbtoolkit.testing import FakeOpenAIServer

from .conftest import CANARY_KEY

QUESTION = sim.question_bank()[0]["question"]
SIMS = ["sim/oracle-large", "sim/swift-mini", "sim/budget-a"]
REPLY = "The answer is 12 because three fours make twelve and nothing else."


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOCAL_KEY", CANARY_KEY)


def local(server: FakeOpenAIServer, **kw) -> nbt.Model:
    return nbt.Model("openai/local", api_base=server.base_url, api_key_env="LOCAL_KEY", **kw)


class Watcher:
    """A stream callback that keeps what each call showed, event by event."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, int, int, str, bool]] = []

    def __call__(self, stream: CallStream) -> None:
        label = stream.call.model.label
        self.seen.append((label, stream.attempt, stream.chunks, stream.text, stream.done))

    def of(self, label: str) -> list[tuple[str, int, int, str, bool]]:
        return [s for s in self.seen if s[0] == label]


def test_ttft_is_the_last_column_and_nan_when_not_streamed() -> None:
    assert OUTPUT_COLUMNS[-1] == "ttft_s"
    res = nbt.orchestrate(QUESTION, SIMS, extract="number", cache="off", audit=False)
    assert list(res.outputs.columns) == OUTPUT_COLUMNS
    assert res.outputs["ttft_s"].isna().all()


def test_simulated_models_stream_their_reply_piece_by_piece() -> None:
    watch = Watcher()
    streamed = nbt.orchestrate(
        QUESTION, SIMS, extract="number", cache="off", audit=False, stream=watch
    )
    plain = nbt.orchestrate(QUESTION, SIMS, extract="number", cache="off", audit=False)
    # The same replies and answers as without streaming.
    assert streamed.outputs["output"].tolist() == plain.outputs["output"].tolist()
    for model, row in streamed.outputs.set_index("model").iterrows():
        events = watch.of(model)
        growing = [e for e in events if not e[4]]
        assert max(e[2] for e in growing) == len(sim.pieces(row["output"])) > 5
        assert events[-1][4] and events[-1][3] == row["output"]  # ends with the whole reply
        # Shown while it grew: a prefix of the reply each time.
        assert all(row["output"].startswith(e[3]) for e in growing)
        # The profile's time to first text: deterministic, a share of its latency.
        assert row["ttft_s"] == pytest.approx(row["latency_s"] * sim.TTFT_SHARE)


def test_cached_replies_are_not_streamed_and_appear_at_once() -> None:
    nbt.orchestrate(QUESTION, SIMS[:1], cache="use", audit=False, stream=True)
    # sim/ models are never cached: a live model is, through the local server.
    with FakeOpenAIServer(reply=REPLY) as server:
        first = nbt.orchestrate("hi", [local(server)], audit=False, stream=True)
        watch = Watcher()
        again = nbt.orchestrate("hi", [local(server)], audit=False, stream=watch)
    assert server.request_count == 1
    assert not math.isnan(first.outputs["ttft_s"].iloc[0])
    row = again.outputs.iloc[0]
    assert row["cached"] and row["output"] == REPLY and math.isnan(row["ttft_s"])
    assert [(e[2], e[3], e[4]) for e in watch.seen] == [(0, REPLY, True)]


@pytest.mark.parametrize("transport", ["aiohttp", "litellm"])
def test_server_sent_events_through_each_transport(transport: str) -> None:
    watch = Watcher()
    with FakeOpenAIServer(reply=REPLY, stream_delay=0.01) as server:
        res = nbt.orchestrate(
            "hi", [local(server)], cache="off", audit=False, stream=watch, transport=transport
        )
    request = server.requests[0]
    assert request["stream"] is True and request["stream_options"] == {"include_usage": True}
    row = res.outputs.iloc[0]
    assert row["output"] == REPLY and row["error"] is None
    assert row["prompt_tokens"] == 1 and row["completion_tokens"] == len(REPLY.split())
    assert row["ttft_s"] >= 0 and row["ttft_s"] <= row["latency_s"]
    assert max(e[2] for e in watch.seen) == len(REPLY.split())  # a piece a word


@pytest.mark.parametrize("transport", ["aiohttp", "litellm"])
def test_usage_not_sent_in_a_stream_is_unknown(transport: str) -> None:
    with FakeOpenAIServer(reply=REPLY, send_usage=False) as server:
        res = nbt.orchestrate(
            "hi", [local(server)], cache="off", audit=False, stream=True, transport=transport
        )
    row = res.outputs.iloc[0]
    assert row["output"] == REPLY
    assert row["prompt_tokens"] is pd_na() and math.isnan(row["cost_usd"])


def pd_na():  # type: ignore[no-untyped-def]
    import pandas as pd

    return pd.NA


@pytest.mark.parametrize("transport", ["aiohttp", "litellm"])
def test_a_stream_cut_mid_reply_keeps_the_part_in_the_error_row(transport: str) -> None:
    server = FakeOpenAIServer(reply=REPLY, faults={0: "stream_cut"})
    with server, pytest.raises(nbt.RunFailedError) as failed:  # its only call failed
        nbt.orchestrate(
            "hi",
            [local(server)],
            cache="off",
            audit=False,
            stream=True,
            retries=0,
            transport=transport,
        )
    assert failed.value.result is not None
    row = failed.value.result.outputs.iloc[0]
    assert row["output"] is None and not row["valid"]
    half = "".join(sim.pieces(REPLY)[: len(REPLY.split()) // 2])
    assert f"cut off after {len(half)} characters: {half!r}" in row["error"]


@pytest.mark.parametrize("transport", ["aiohttp", "litellm"])
def test_the_retry_of_a_cut_stream_replaces_the_partial_reply(transport: str) -> None:
    watch = Watcher()
    with FakeOpenAIServer(reply=REPLY, faults={0: "stream_cut"}) as server:
        res = nbt.orchestrate(
            "hi", [local(server)], cache="off", audit=False, stream=watch, transport=transport
        )
    row = res.outputs.iloc[0]
    assert row["output"] == REPLY and row["error"] is None and row["attempts"] == 2
    first = [e for e in watch.seen if e[1] == 1]
    second = [e for e in watch.seen if e[1] == 2]
    assert first and max(e[2] for e in first) == len(REPLY.split()) // 2
    # The retry starts again from nothing, and ends with the whole reply.
    assert second[0][2] == 0 and second[-1][3] == REPLY and second[-1][4]


def test_a_stream_callback_that_raises_is_a_warning_not_a_failed_run() -> None:
    def broken(stream: CallStream) -> None:
        raise RuntimeError("display gone")

    res = nbt.orchestrate(QUESTION, SIMS, extract="number", cache="off", audit=False, stream=broken)
    assert res.outputs["output"].notna().all()
    assert any("stream callback raised RuntimeError: display gone" in w for w in res.warnings)


def test_stream_must_be_a_flag_or_a_function() -> None:
    with pytest.raises(nbt.ConfigError, match="stream='yes'"):
        nbt.orchestrate(QUESTION, SIMS, stream="yes")  # type: ignore[arg-type]


def test_a_secret_in_a_streamed_reply_is_never_shown() -> None:
    watch = Watcher()
    with FakeOpenAIServer(reply=f"my key is {CANARY_KEY} ok", stream_delay=0.005) as server:
        res = nbt.orchestrate("hi", [local(server)], cache="off", audit=False, stream=watch)
    assert CANARY_KEY not in res.outputs["output"].iloc[0]
    shown = [e[3] for e in watch.seen]
    assert shown and not any(CANARY_KEY[:12] in text for text in shown)


# ------------------------------------------------------------------ the magic and the panes


@pytest.fixture
def ip():  # type: ignore[no-untyped-def]
    from .conftest import loaded_shell

    yield from loaded_shell(3)


def test_the_magic_streams_when_asked_and_by_setting(ip) -> None:  # type: ignore[no-untyped-def]
    # A shell without a kernel: nobody watches, so auto does not stream.
    res = ip.run_cell_magic("orchestrate", "-m oracle -m swift --progress none", QUESTION)
    assert res.outputs["ttft_s"].isna().all()
    res = ip.run_cell_magic("orchestrate", "-m oracle -m swift --stream --progress none", QUESTION)
    assert res.outputs["ttft_s"].notna().all()
    ip.run_line_magic("config", "Orchestrate.stream = True")
    res = ip.run_cell_magic("orchestrate", "-m oracle --progress none", QUESTION)
    assert res.outputs["ttft_s"].notna().all()
    res = ip.run_cell_magic("orchestrate", "-m oracle --no-stream --progress none", QUESTION)
    assert res.outputs["ttft_s"].isna().all()


def test_stream_and_no_stream_together_is_one_usage_line(ip) -> None:  # type: ignore[no-untyped-def]
    from IPython.core.error import UsageError

    with pytest.raises(UsageError, match="--stream and --no-stream: give one of them"):
        ip.run_cell_magic("orchestrate", "-m oracle --stream --no-stream", QUESTION)


def test_replies_are_rendered_as_markdown_with_code_blocks_kept() -> None:
    from nbtoolkit.jupyter.streaming import render_markdown

    shown = render_markdown("**Sure**:\n\n```python\nprint(1 < 2)\n```\n<script>x</script>")
    assert "<strong>Sure</strong>" in shown
    assert "<pre><code" in shown and "print(1 &lt; 2)" in shown
    assert "<script>" not in shown  # raw HTML in a reply is shown, never run


def test_panes_over_many_rows_show_each_models_latest_row_and_a_counter() -> None:
    import pandas as pd

    from nbtoolkit.jupyter.streaming import StreamPanes

    panes = StreamPanes(stop=False)
    data = pd.DataFrame(sim.question_bank()[:3])
    nbt.orchestrate(
        "{question}",
        SIMS[:2],
        data=data,
        cache="off",
        audit=False,
        stream=panes.on_stream,
        on_start=panes.attach,
    )
    plain = panes._bundle()["text/plain"]
    for model in SIMS[:2]:
        assert f"== {model} (row 2 · 3/3 done" in plain
