"""%%orchestrate --stream in a real kernel: panes filled live through display updates, and
only the final output saved by a headless (papermill) run."""

from __future__ import annotations

import importlib.util
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest

from .kernels import execute, running_kernel

WIDGET = "application/vnd.jupyter.widget-view+json"
CELL = "%%orchestrate --stream -m oracle -m steady -m swift\nWhat is 2+2?"
MODELS = ["sim/oracle-large", "sim/steady-medium", "sim/swift-mini"]
PANE = re.compile(r"^== (sim/\S+) \((.*)\)$", re.MULTILINE)

pytestmark = pytest.mark.slow


def panes_of(plain: str) -> dict[str, str]:
    """model -> the text its pane shows, from the panes' text/plain."""
    found = list(PANE.finditer(plain))
    texts = {}
    for i, m in enumerate(found):
        end = found[i + 1].start() if i + 1 < len(found) else len(plain)
        texts[m.group(1)] = plain[m.end() + 1 : end].rstrip("\n")
    return texts


@pytest.fixture
def kernel(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    # Real sleeps: the replies take a few seconds to arrive, so the panes can be seen fill.
    monkeypatch.setenv("NBTOOLKIT_SIM_TIME_SCALE", "2.5")
    with running_kernel() as kc:
        yield kc


def test_a_stream_cell_fills_one_pane_per_model_then_shows_the_table(kernel: Any) -> None:
    _, reply = execute(kernel, "%load_ext nbtoolkit")
    assert reply["content"]["status"] == "ok"
    seen, reply = execute(kernel, CELL)
    assert reply["content"]["status"] == "ok"
    said = "".join(m["content"].get("text", "") for m in seen if m["msg_type"] == "stream")
    assert "failed while the run waited" not in said  # the pump of the Stop button worked
    kinds = [m["msg_type"] for m in seen]
    shown = [m for m in seen if m["msg_type"] == "display_data"]
    panes_id = shown[0]["content"]["transient"]["display_id"]
    assert "nbt-stream" in shown[0]["content"]["data"]["text/html"]
    assert any(WIDGET in m["content"]["data"] for m in shown)  # the Stop button
    updates = [
        m["content"]["data"]
        for m in seen
        if m["msg_type"] == "update_display_data"
        and m["content"]["transient"]["display_id"] == panes_id
    ]
    states = [panes_of(u["text/plain"]) for u in updates]

    _, _ = execute(kernel, "import json; outs = _orch.outputs.set_index('model')['output']")
    out, _ = execute(kernel, "print(json.dumps(outs.to_dict()))")
    outputs = json.loads(next(m for m in out if m["msg_type"] == "stream")["content"]["text"])
    assert sorted(outputs) == sorted(MODELS)
    for model in MODELS:
        whole = outputs[model]
        partial = {s[model] for s in states if s.get(model) and s[model] != whole}
        # Several updates showed this model's reply half-way, each a beginning of it.
        assert len(partial) >= 2, (model, partial)
        assert all(whole.startswith(p) for p in partial)
    # The last update, before the cell's reply, holds every reply whole.
    assert states[-1] == outputs
    last_update = len(kinds) - 1 - kinds[::-1].index("update_display_data")
    assert last_update < kinds.index("execute_result")  # the table comes under the panes
    # The panes were throttled: a few updates a second, not one per word.
    words = sum(len(o.split()) for o in outputs.values())
    assert len(updates) < words


def test_a_headless_run_saves_only_the_final_output(tmp_path: Path) -> None:
    if importlib.util.find_spec("ipykernel") is None:
        pytest.skip("ipykernel is not installed: pip install -e '.[test]'")
    import papermill

    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("%load_ext nbtoolkit"),
        nbformat.v4.new_code_cell(CELL),
        nbformat.v4.new_code_cell("bool(_orch.outputs['ttft_s'].notna().all())"),
    ]
    source, saved = tmp_path / "in.ipynb", tmp_path / "out.ipynb"
    nbformat.write(nb, source)
    papermill.execute_notebook(str(source), str(saved), kernel_name="python3", progress_bar=False)
    cells = nbformat.read(saved, as_version=4).cells
    outputs = cells[1].outputs
    everything = json.dumps(outputs)
    assert "nbt-stream" not in everything and WIDGET not in everything
    results = [o for o in outputs if o["output_type"] == "execute_result"]
    assert len(results) == 1 and "text/html" in results[0]["data"]  # the table, once
    # The calls were still streamed: each reply has its time to first token.
    assert cells[2].outputs[0]["data"]["text/plain"] == "True"


def test_a_click_on_stop_mid_run_keeps_the_finished_rows(kernel: Any) -> None:
    """The click as the frontend sends it (a comm message on the shell channel), while the
    cell still runs: the run stops, the finished reply is kept, the other is cancelled."""
    execute(kernel, "%load_ext nbtoolkit")
    msg_id = kernel.execute(
        "%%orchestrate -m oracle -m swift --extract number\nWhat is 2+2?", allow_stdin=True
    )
    button = None
    clicked_at = None
    seen = []
    while True:
        msg = kernel.get_iopub_msg(timeout=120)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        seen.append(msg)
        content = msg["content"]
        if msg["msg_type"] == "display_data" and WIDGET in content["data"]:
            button = content["data"][WIDGET]["model_id"]
        plain = content.get("data", {}).get("text/plain", "")
        status = {m.group(1): m.group(2) for m in PANE.finditer(plain)}
        # Clicked once swift-mini has finished (its pane then shows its tokens per second).
        if button and clicked_at is None and "tokens/s" in status.get("sim/swift-mini", ""):
            click = {"comm_id": button, "data": {"method": "custom", "content": {"event": "click"}}}
            kernel.shell_channel.send(kernel.session.msg("comm_msg", click))
            clicked_at = len(seen)
        if msg["msg_type"] == "status" and content.get("execution_state") == "idle":
            break
    assert clicked_at is not None
    out, _ = execute(
        kernel,
        "o = _orch.outputs.set_index('model'); "
        "print(_orch.cancelled, o.loc['sim/swift-mini', 'output'] is not None, "
        "o.loc['sim/oracle-large', 'error'])",
    )
    said = next(m for m in out if m["msg_type"] == "stream")["content"]["text"]
    assert said.startswith("True True Cancelled")
