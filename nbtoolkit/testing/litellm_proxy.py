"""A real LiteLLM proxy on 127.0.0.1 for tests: mock models, virtual keys, no database.

``LiteLLMProxy`` starts ``litellm --config ...`` (from ``litellm[proxy]`` in a virtual
environment of its own, made by ``ensure_proxy_venv``; the library's own environment never
imports litellm's proxy package) with models that answer through litellm's ``mock_response``, so
no provider is reached. It takes about 15 to 30 s to start: start it once per test run.

Virtual keys without a database: the proxy's keys, budgets and spend live in Postgres
(through prisma, whose engines are downloaded at first use), so they cannot run on a machine
without both. The proxy's *custom auth* hook can return the key's record itself, and with
``custom_auth_run_common_checks`` and ``enable_post_custom_auth_checks`` the proxy enforces
from that record, in memory, the same checks and errors it does for database keys: the
key's model allowlist (``models``), its per-model budgets (``model_max_budget``, spend
counted by the proxy as calls are made) and its rate limits (``rpm_limit``, with
``Retry-After``). A key's overall ``max_budget`` is not enforced on that path (litellm checks
it only for keys read from the database). Tested with litellm 1.108.7 (``PROXY_REQUIREMENT``).

Example::

    with LiteLLMProxy(
        models={"gpt-4o-mini": "The answer is 42."},
        keys={"sk-team": {}, "sk-mini-only": {"models": ["gpt-4o-mini"]}},
    ) as proxy:
        ...  # orchestrate(..., proxy=proxy.url) with the key's variable set
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

__all__ = ["PROXY_REQUIREMENT", "LiteLLMProxy", "ProxyUnavailable", "ensure_proxy_venv"]

# The version this was tested with: the custom-auth checks it relies on moved between minors.
PROXY_REQUIREMENT = "litellm[proxy]==1.108.7"
MASTER_KEY = "sk-nbtoolkit-test-master"


class ProxyUnavailable(RuntimeError):
    """The proxy could not be installed or started here; the message says why."""


def default_venv() -> Path:
    """``$NBTOOLKIT_PROXY_VENV``, else ``~/.cache/nbtoolkit-tests/litellm-proxy``."""
    given = os.environ.get("NBTOOLKIT_PROXY_VENV")
    if given:
        return Path(given)
    return Path.home() / ".cache" / "nbtoolkit-tests" / "litellm-proxy"


def ensure_proxy_venv(venv: Path | None = None, timeout_s: float = 1800) -> Path:
    """The ``litellm`` command of a virtual environment holding ``PROXY_REQUIREMENT``,
    created (with pip, through the machine's index) when missing. Raises ``ProxyUnavailable``."""
    venv = venv or default_venv()
    command = venv / "bin" / "litellm"
    marker = venv / "nbtoolkit-requirement.txt"
    if command.exists() and marker.exists() and marker.read_text() == PROXY_REQUIREMENT:
        return command
    venv.parent.mkdir(parents=True, exist_ok=True)
    steps = [
        [sys.executable, "-m", "venv", str(venv)],
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", PROXY_REQUIREMENT],
    ]
    for step in steps:
        try:
            done = subprocess.run(step, capture_output=True, text=True, timeout=timeout_s)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ProxyUnavailable(f"{' '.join(step[:4])}: {exc}") from None
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
            raise ProxyUnavailable(f"cannot install {PROXY_REQUIREMENT}: {' | '.join(tail)}")
    if not command.exists():
        raise ProxyUnavailable(f"{PROXY_REQUIREMENT} installed no 'litellm' command in {venv}")
    marker.write_text(PROXY_REQUIREMENT)
    return command


# The proxy's custom-auth hook: a file run by the proxy in its own environment, never
# imported here (the library never imports litellm's proxy).
_AUTH = Path(__file__).with_name("custom_auth.py.tmpl")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LiteLLMProxy:
    """A ``litellm`` proxy process on loopback; ``url`` is its address (no ``/v1``).

    ``models``: proxy model name -> the mock reply (priced by litellm as ``openai/<name>``
    unless the name has a provider prefix). ``keys``: virtual key -> fields of litellm's
    ``UserAPIKeyAuth`` (``models``, ``model_max_budget``, ``rpm_limit``...). The master key
    (``MASTER_KEY``) may use everything.
    """

    def __init__(
        self,
        models: dict[str, str],
        keys: dict[str, dict[str, Any]],
        *,
        command: Path | None = None,
        start_timeout_s: float = 180.0,
    ) -> None:
        self.models, self.keys = models, {MASTER_KEY: {}, **keys}
        self.command = command
        self.start_timeout_s = start_timeout_s
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.workdir: Path | None = None
        self.log_path: Path | None = None

    def _config(self) -> str:
        lines = ["model_list:"]
        for name, reply in self.models.items():
            routed = name if "/" in name else f"openai/{name}"
            lines += [
                f"  - model_name: {json.dumps(name)}",
                "    litellm_params:",
                f"      model: {json.dumps(routed)}",
                "      api_key: not-used",  # mock_response: no provider is reached
                f"      mock_response: {json.dumps(reply)}",
            ]
        lines += [
            "general_settings:",
            f"  master_key: {MASTER_KEY}",
            "  custom_auth: custom_auth.user_api_key_auth",
            "  custom_auth_run_common_checks: true",
            "litellm_settings:",
            "  telemetry: false",
            "  enable_post_custom_auth_checks: true",
        ]
        return "\n".join(lines) + "\n"

    def start(self) -> LiteLLMProxy:
        command = self.command or ensure_proxy_venv()
        self.workdir = Path(tempfile.mkdtemp(prefix="nbtoolkit-litellm-proxy-"))
        (self.workdir / "config.yaml").write_text(self._config())
        shutil.copyfile(_AUTH, self.workdir / "custom_auth.py")
        (self.workdir / "keys.json").write_text(json.dumps(self.keys))
        self.log_path = self.workdir / "proxy.log"
        env = {
            **{k: v for k, v in os.environ.items() if not k.endswith(("_API_KEY", "_KEY"))},
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # no price-table download
            "NO_PROXY": "127.0.0.1,localhost",
        }
        env.pop("DATABASE_URL", None)
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [
                    str(command),
                    "--config",
                    "config.yaml",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--num_workers",
                    "1",
                ],
                cwd=self.workdir,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ProxyUnavailable(f"the proxy exited at start: {self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/health/liveliness", timeout=2):
                    return self
            except OSError:
                time.sleep(0.5)
        self.stop()
        raise ProxyUnavailable(f"the proxy did not start in {self.start_timeout_s:g} s")

    def log_tail(self, lines: int = 5) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return " | ".join(self.log_path.read_text(errors="replace").strip().splitlines()[-lines:])

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None

    def __enter__(self) -> LiteLLMProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


if __name__ == "__main__":
    # `python -m nbtoolkit.testing.litellm_proxy install`: what .ci/run does before the tests.
    if sys.argv[1:] == ["install"]:
        print(ensure_proxy_venv())
    else:
        print("usage: python -m nbtoolkit.testing.litellm_proxy install", file=sys.stderr)
        sys.exit(2)
