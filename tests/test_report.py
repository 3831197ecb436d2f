"""Reports: templates, parameter checks, papermill runs, HTML, replay, and no leaked keys."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pandas as pd
import pytest

import nbtoolkit as nbt
from nbtoolkit import report
from nbtoolkit.cli import main
from nbtoolkit.providers import sim
from nbtoolkit.report import sections as rs
from nbtoolkit.testing import FakeOpenAIServer

from .conftest import CANARY_KEY

ROOT = Path(__file__).resolve().parents[1]
SECTIONS = [
    "Executive summary",
    "Orchestration workflow",
    "Validation and error handling",
    "Optimisation notes",
    "Key questions",
]
needs_kernel = pytest.mark.skipif(
    importlib.util.find_spec("ipykernel") is None, reason="ipykernel is not installed"
)


def no_external_resources(page: str) -> None:
    """Nothing in the page is fetched from a network: it opens offline, as one file."""
    assert not re.search(r"""<script[^>]*\bsrc\s*=""", page, re.I)
    assert not re.search(r"""\b(src|href)\s*=\s*["']?(https?:)?//""", page, re.I)
    assert not re.search(r"""<link\b""", page, re.I)
    assert not re.search(r"""@import|url\(\s*["']?(https?:)?//""", page, re.I)


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# ----------------------------------------------------------------------- templates


@pytest.mark.parametrize("name", report.BUILTIN_TEMPLATES)
def test_templates_are_stored_clean_and_declare_typed_parameters(name: str) -> None:
    path = report.template_path(name)
    assert path == ROOT / "templates" / f"{name}.ipynb"
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None
    declared = report.template_parameters(path)
    assert declared["cache"].type == "str" and declared["cache"].default == "use"
    assert declared["output_prefix"].default == ""
    assert declared["seed"].optional and declared["seed"].type == "int"
    assert declared["data"].default == rs.BUILTIN_DATA
    models = [v for k, v in declared.items() if k.endswith("models")]
    assert models and all(p.type == "list" for p in models)
    assert all(m.startswith("sim/") for p in models for m in p.default)


def test_templates_are_packaged_with_every_subpackage() -> None:
    """A non-editable install gets the templates (nbtoolkit/templates) and every package."""
    tomllib = pytest.importorskip("tomllib")
    from setuptools import find_packages

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    assert set(find_packages(str(ROOT), include=["nbtoolkit", "nbtoolkit.*"])) <= listed
    assert config["package-dir"]["nbtoolkit.templates"] == "templates"
    assert "*.ipynb" in config["package-data"]["nbtoolkit.templates"]


def test_an_unknown_template_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "report", "no_such_template", "-o", "x.ipynb")
    assert code == 2 and err.count("\n") == 1 and "compare_models" in err


# ---------------------------------------------------------------------- parameters


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-p", "nope", "1"], "has no parameter 'nope'. Its parameters: title, prompt"),
        (["-p", "modles", "[a]"], "no parameter 'modles'. Did you mean 'models'?"),
        (
            ["-p", "strategy", "votee"],
            "parameter 'strategy': unknown strategy 'votee'. Did you mean 'vote'?",
        ),
        (["-p", "strategy", "judge"], "'judge' needs options (a judge or aggregator model)"),
        (["-p", "rows", "eight"], "parameter 'rows' takes int, not 'eight'"),
        (["-p", "rows", "-1"], "parameter 'rows': -1 is below 0 (the first N rows; 0 for all)"),
        (["-p", "samples", "0"], "parameter 'samples': 0 is below 1"),
        (["-p", "retries", "-2"], "parameter 'retries': -2 is below 0"),
        (["-p", "confidence_threshold", "high"], "takes float"),
        (["-p", "variables", "[1, 2]"], "takes dict"),
        (["-p", "seed", "x"], "takes int or None"),
    ],
)
def test_parameter_mistakes_fail_before_anything_runs(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, args: list[str], message: str
) -> None:
    out = tmp_path / "r.ipynb"
    code, _, err = run_cli(capsys, "report", "compare_models", *args, "-o", str(out))
    assert code == 2
    assert err.count("\n") == 1 and message in err, err
    assert not out.exists()


def test_a_parameters_file_is_checked_like_the_command_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    params = tmp_path / "params.yaml"
    params.write_text("rows: 3\nmodels: [sim/oracle-large]\nunknown_thing: 1\n")
    code, _, err = run_cli(capsys, "report", "compare_models", "-f", str(params), "-o", "x.ipynb")
    assert code == 2 and "no parameter 'unknown_thing'" in err
    params.write_text("rows: three\n")
    code, _, err = run_cli(capsys, "report", "compare_models", "-f", str(params), "-o", "x.ipynb")
    assert code == 2 and "parameter 'rows' takes int, not 'three'" in err


def test_cli_values_are_parsed_as_the_declared_type() -> None:
    declared = report.template_parameters(report.template_path("compare_models"))
    values = report.check_parameters(
        declared,
        {"rows": 3},
        [
            ("models", "[sim/oracle-large, sim/swift-mini]"),
            ("extract", "number"),
            ("seed", "None"),
            ("temperature", "0.2"),
            ("variables", "{topic: autumn}"),
            ("title", "123"),
        ],
    )
    assert values == {
        "rows": 3,
        "models": ["sim/oracle-large", "sim/swift-mini"],
        "extract": ["number"],
        "seed": None,
        "temperature": 0.2,
        "variables": {"topic": "autumn"},
        "title": "123",
    }
    assert report.check_parameters(declared, {}, [("models", "sim/a,sim/b")]) == {
        "models": ["sim/a", "sim/b"]
    }


@pytest.mark.parametrize(
    "args",
    [
        ["-p", "prompt", f"Use the key {CANARY_KEY} to answer"],
        ["-p", "api_key_env", CANARY_KEY],
        ["-p", "models", f"[openai/x, {CANARY_KEY}]"],
        ["-p", "title", "my-team-token-0123456789"],  # the value of a *_TOKEN variable
    ],
)
def test_a_key_passed_as_a_parameter_is_refused(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
) -> None:
    """papermill writes parameters into the notebook: a key there would be kept for good."""
    monkeypatch.setenv("TEAM_TOKEN", "my-team-token-0123456789")
    out = tmp_path / "r.ipynb"
    code, _, err = run_cli(capsys, "report", "compare_models", *args, "-o", str(out))
    assert code == 2 and err.count("\n") == 1
    assert "looks like an API key" in err and "NAME" in err
    assert CANARY_KEY not in err and "my-team-token" not in err
    assert not out.exists()


def test_a_key_in_a_parameters_file_is_refused(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    params = tmp_path / "p.yaml"
    params.write_text(f"variables:\n  key: {CANARY_KEY}\n")
    code, _, err = run_cli(capsys, "report", "compare_models", "-f", str(params), "-o", "r.ipynb")
    assert code == 2 and "parameter 'variables' looks like an API key" in err


def test_estimate_prints_calls_tokens_and_costs_without_running(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, _ = run_cli(
        capsys,
        "report",
        "compare_models",
        "--estimate",
        "-p",
        "rows",
        "4",
        "-p",
        "max_tokens",
        "200",
    )
    assert code == 0
    assert "Estimate: 20 calls to 5 model(s)" in out and "Nothing was sent" in out
    code, out, _ = run_cli(capsys, "report", "pipeline", "--estimate", "-p", "rows", "2")
    assert code == 0
    assert out.count("Estimate:") == 3 and "{draft_outputs}" in out and "lower bound" in out
    assert not (tmp_path / "nbtoolkit-cache" / "cache.sqlite").exists()


# ------------------------------------------------------------------------ sections


def test_sections_render_from_a_run_without_a_kernel() -> None:
    data = rs.load_inputs(rs.BUILTIN_DATA, 8)
    res = nbt.orchestrate(
        "{question}\nReason briefly, then reply as JSON with an 'answer' field.",
        ["sim/oracle-large", "sim/swift-mini", "sim/budget-a", "sim/budget-b"],
        data=data,
        extract=["json:answer", "number"],
        seed=0,
    )
    page = rs.Report(res, gold="gold", title="T").header()._repr_html_()
    assert "Simulated models" in page
    r = rs.Report(res, gold="gold")
    html = "".join(
        s._repr_html_()
        for s in (
            r.executive_summary(),
            r.workflow(),
            r.validation(),
            r.optimisation(),
            r.key_questions(),
            r.strategies(),
            r.calibration(),
        )
    )
    for heading in SECTIONS:
        assert f">{heading}</h2>" in html
    assert html.count("<svg") >= 5  # workflow, latency, cost/accuracy, heatmap, strategies
    assert "simulated" in html
    no_external_resources(html)
    # Dropping a model is a rescore over the panel minus that model: no new call.
    assert "What dropping each model would change" in html and "A cascade" in html
    bundle = r.appendix()._repr_mimebundle_()
    record = bundle[rs.RECORD_MIME]
    assert record["manifest"]["calls"] == 32 and record["summary"]["rows"] == 8
    assert record["frames"] == {}


def test_sections_of_a_pipeline() -> None:
    from nbtoolkit.pipelines import Step, pipeline

    data = rs.load_inputs(rs.BUILTIN_DATA, 3)
    res = pipeline(
        [
            Step(
                "draft",
                "{question}\nReply as JSON with an 'answer' field.",
                ["sim/swift-mini", "sim/budget-a"],
                extract=["json:answer", "number"],
            ),
            Step(
                "final",
                "{question}\nA draft says {draft}. Reply as JSON with an 'answer' field.",
                ["sim/oracle-large"],
                strategy="first_valid",
                extract=["json:answer", "number"],
            ),
        ],
        data=data,
    )
    r = rs.Report(res, gold="gold")
    flow = r.workflow()._repr_html_()
    assert "draft: vote" in flow and "{draft}" in flow and "final: first_valid" in flow
    assert "object at 0x" not in r.executive_summary()._repr_html_()
    assert "Step final" in r.validation()._repr_html_()


def test_sections_and_estimate_never_import_jupyter_or_papermill() -> None:
    """``nbtoolkit.report.sections`` and ``estimate``: a plain script can use them."""
    code = (
        "import sys\n"
        "from nbtoolkit import report\n"
        "from nbtoolkit.report import sections as rs\n"
        "from nbtoolkit.estimates import estimate\n"
        "import nbtoolkit as nbt\n"
        "res = nbt.orchestrate('What is 2 + 2?', ['sim/swift-mini', 'sim/budget-a'], audit=False)\n"
        "r = rs.Report(res)\n"
        "[s._repr_html_() for s in (r.executive_summary(), r.workflow(), r.key_questions())]\n"
        "estimate('hi', ['sim/swift-mini'])\n"
        "print(sorted(m for m in ('IPython', 'ipywidgets', 'papermill', 'ipykernel', 'nbconvert')"
        " if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_collect_frames_reads_what_a_report_recorded(tmp_path: Path) -> None:
    pd.DataFrame({"row": [0], "answer": ["4"]}).to_csv(tmp_path / "r.consensus.csv", index=False)
    nb = nbformat.v4.new_notebook()
    nb.metadata["nbtoolkit"] = {"frames": {"consensus": "r.consensus.csv"}}
    nbformat.write(nb, tmp_path / "r.ipynb")
    frames = report.collect_frames(tmp_path / "r.ipynb")
    assert list(frames) == ["consensus"] and frames["consensus"]["answer"].tolist() == [4]


# ----------------------------------------------------------------- real kernels


@pytest.mark.slow
@needs_kernel
@pytest.mark.parametrize("name", ["batch_eval", "pipeline"])
def test_a_template_runs_into_a_self_contained_report(name: str, tmp_path: Path) -> None:
    out = tmp_path / "out" / f"{name}.ipynb"
    run = report.run_report(name, out, parameters={"rows": 10}, progress=False)
    page = run.html.read_text() if run.html else ""
    for heading in SECTIONS:
        assert heading in page, heading
    assert page.count("<svg") >= 4 and "Simulated models" in page
    no_external_resources(page)
    if name == "batch_eval":
        assert "Calibration recommendation" in page and "Accuracy, cost and latency" in page
    meta = nbformat.read(out, as_version=4).metadata["nbtoolkit"]
    assert meta["template"] == name and meta["parameters"]["rows"] == 10
    assert meta["frames"] == {
        "outputs": f"{name}.outputs.csv",
        "consensus": f"{name}.consensus.csv",
    }
    manifest = meta["manifest"] if name != "pipeline" else meta["manifest"]["steps"]["final"]
    assert manifest["seed"] == 0 and manifest["nbtoolkit"] == nbt.__version__
    frames = report.collect_frames(out)
    assert len(frames["consensus"]) == (10 if name == "batch_eval" else 30)
    assert {"model", "answer", "cost_usd"} <= set(frames["outputs"].columns)


@pytest.mark.slow
@needs_kernel
def test_demo_writes_the_html_report_and_a_five_line_summary(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    html = tmp_path / "nbtoolkit-demo.html"
    code, out, _ = run_cli(capsys, "demo", "--rows", "6", "-o", str(html))
    assert code == 0
    lines = out.strip().splitlines()
    assert lines[0].startswith(f"Wrote {html}") and len(lines) == 6
    assert lines[1].split()[0] == "asked" and lines[-1].split()[0] == "time"
    page = html.read_text()
    for heading in SECTIONS:
        assert heading in page
    assert "Appendix: run manifest" in page and "simulated" in page
    no_external_resources(page)
    assert html.with_suffix(".ipynb").exists()
    assert (tmp_path / "nbtoolkit-demo.consensus.csv").exists()
    # Every file written is named on the screen, the CSVs included.
    written = sorted(p.name for p in tmp_path.glob("nbtoolkit-demo.*"))
    assert len(written) == 4 and all(name in lines[0] for name in written), (written, lines[0])


@pytest.mark.slow
@needs_kernel
def test_the_demo_writes_into_a_folder_of_its_own(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    code, out, _ = run_cli(capsys, "demo", "--rows", "3")
    assert code == 0
    assert [p.name for p in work.iterdir()] == ["nbtoolkit-demo"]
    written = sorted(p.name for p in (work / "nbtoolkit-demo").iterdir())
    assert "report.html" in written and "report.ipynb" in written
    assert "nbtoolkit-demo/report.html" in out


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        run_cli(capsys, "--version")
    assert done.value.code == 0
    assert capsys.readouterr().out.strip() == f"nbtoolkit {nbt.__version__}"


@pytest.mark.slow
@needs_kernel
def test_a_failing_cell_is_named_and_the_partial_notebook_kept(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    nb = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_code_cell("divisor: int = 1", metadata={"tags": ["parameters"]}),
            nbformat.v4.new_code_cell("ran = True"),
            nbformat.v4.new_code_cell("1 / divisor"),
            nbformat.v4.new_code_cell("never = True"),
        ],
        metadata={
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}
        },
    )
    template = tmp_path / "failing.ipynb"
    nbformat.write(nb, template)
    out = tmp_path / "partial.ipynb"
    code, _, err = run_cli(capsys, "report", str(template), "-p", "divisor", "0", "-o", str(out))
    assert code == 1
    # Cell "In [4]": the parameters, papermill's injected parameters, one that ran, this one.
    assert "nbtoolkit: cell In [4] failed: ZeroDivisionError: division by zero" in err
    assert f"nbtoolkit: the partial notebook is kept at {out}" in err
    kept = nbformat.read(out, as_version=4)
    failed = [c for c in kept.cells if c.get("execution_count") == 4]
    assert failed and any(o.output_type == "error" for o in failed[0].outputs)
    assert [c.source for c in kept.cells if c.get("execution_count") == 3] == ["ran = True"]
    assert not out.with_suffix(".html").exists()


def _reply(request: dict) -> str:
    """The right answer, except that model c is wrong on every third question."""
    question = sim.find_question(request["messages"][-1]["content"])
    answer = question.answer if question else 0
    if request["model"] == "c" and question and int(question.id[-3:]) % 3 == 0:
        answer += 1
    return f'Working it out.\n```json\n{{"answer": "{answer}"}}\n```'


@pytest.mark.slow
@needs_kernel
def test_replay_only_gives_the_same_report_without_a_call_and_no_key_is_written(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A live run through litellm's HTTP client, then the server is gone and --replay-only
    gives the same consensus byte for byte. The key never lands in any file."""
    monkeypatch.setenv("NBT_REPORT_API_KEY", CANARY_KEY)
    monkeypatch.chdir(tmp_path)
    server = FakeOpenAIServer(reply=_reply).start()
    params = tmp_path / "params.yaml"
    params.write_text(
        "models: [openai/a, openai/b, openai/c]\n"
        f"api_base: {server.base_url}\napi_key_env: NBT_REPORT_API_KEY\nrows: 6\n"
    )
    try:
        code, _, err = run_cli(
            capsys, "report", "compare_models", "-f", str(params), "-o", "live.ipynb"
        )
        assert code == 0, err
        served = server.request_count
        assert served == 18
    finally:
        server.stop()
    code, out, err = run_cli(
        capsys, "report", "compare_models", "-f", str(params), "-o", "replay.ipynb", "--replay-only"
    )
    assert code == 0, err
    assert server.request_count == served
    live, replay = Path("live.consensus.csv"), Path("replay.consensus.csv")
    assert live.read_bytes() == replay.read_bytes()
    moved = ["cached", "attempts"]  # a replayed call is cached, with no attempt made
    assert (
        pd.read_csv("live.outputs.csv")
        .drop(columns=moved)
        .equals(pd.read_csv("replay.outputs.csv").drop(columns=moved))
    )
    first = nbformat.read("live.ipynb", as_version=4).metadata["nbtoolkit"]
    again = nbformat.read("replay.ipynb", as_version=4).metadata["nbtoolkit"]
    assert again["parameters"]["cache"] == "replay-only"
    assert again["summary"]["cached"] == 18 and first["summary"]["cached"] == 0
    for key in ("accuracy", "mean_confidence", "disagreements", "tokens", "calls"):
        assert first["summary"][key] == again["summary"][key], key
    assert first["manifest"]["cache_keys_sha256"] == again["manifest"]["cache_keys_sha256"]
    page = Path("replay.html").read_text()
    assert "came from the cache" in page and "No known price for openai/a" in page
    no_external_resources(page)
    # The key was in the environment of both runs and their kernels: it is in no file at all.
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(written) >= 10
    for path in written:
        assert CANARY_KEY.encode() not in path.read_bytes(), path


def test_a_report_kernel_is_not_interrupted_when_it_is_shut_down() -> None:
    """jupyter_client sends SIGINT before a shutdown request; after the last cell the kernel
    may still be in its handler, and prints "KeyboardInterrupt caught in kernel" (issue 11)."""
    import asyncio

    from nbtoolkit.report import run as report_run

    manager = report_run._kernel_manager_class()()
    sent: list[object] = []

    async def signal_kernel(signum: object) -> None:
        sent.append(signum)

    manager._async_signal_kernel = signal_kernel  # type: ignore[method-assign]
    manager.provisioner = type("Running", (), {"has_process": True})()  # a kernel is running
    manager.shutting_down = True
    asyncio.run(manager._async_interrupt_kernel())
    assert sent == []
    manager.shutting_down = False  # a real interrupt (a cell timeout) still goes through
    asyncio.run(manager._async_interrupt_kernel())
    assert len(sent) == 1


def test_a_report_notebook_stays_readable_when_a_secret_is_made_of_digits(
    tmp_path: Path, monkeypatch
) -> None:
    import json

    from nbtoolkit.report.run import _redact_file, write_notebook

    token = "4815162342108"  # a numeric token: its pieces occur inside numbers
    monkeypatch.setenv("MY_APP_TOKEN", token)
    nb = nbformat.v4.new_notebook()
    nb.cells.append(nbformat.v4.new_code_cell(f"print('{token}')"))
    nb.metadata["papermill"] = {"duration": 0.4815162342108, "count": 14815162342108}
    for path in (tmp_path / "a.ipynb", tmp_path / "b.ipynb"):
        if path.name == "a.ipynb":
            write_notebook(nb, path)
        else:  # a partial notebook left by a failed cell, redacted in place
            path.write_text(nbformat.writes(nb), encoding="utf-8")
            _redact_file(path)
        text = path.read_text(encoding="utf-8")
        assert token not in text.replace("0.4815162342108", "").replace("14815162342108", "")
        back = json.loads(text)  # still JSON
        assert back["metadata"]["papermill"] == {
            "duration": 0.4815162342108,
            "count": 14815162342108,
        }
        assert "".join(back["cells"][0]["source"]) == "print('***')"


def test_a_secret_holding_html_characters_is_hidden_in_the_report_page(monkeypatch) -> None:
    pytest.importorskip("nbconvert")
    from nbtoolkit.report.run import to_html

    secret = 'ab"cd\\ef1234567890<&>'  # nbconvert writes it as ...&lt;&amp;&gt;
    monkeypatch.setenv("MY_SECRET", secret)
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("print(secret)")
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=f"the key: {secret}\n")]
    nb.cells.append(cell)
    page = to_html(nb)
    assert "the key: ***" in page
    assert "1234567890" not in page and "ab&quot;cd" not in page and 'ab"cd' not in page
    assert nb.cells[0].outputs[0]["text"] == f"the key: {secret}\n"  # the notebook as it was
