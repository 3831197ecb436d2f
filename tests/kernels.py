"""A real Jupyter kernel for the tests that need one, driven as a person's frontend drives it."""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import Iterator
from typing import Any

import pytest


@contextlib.contextmanager
def running_kernel() -> Iterator[Any]:
    """A fresh ``python3`` kernel's client (the kernel sees this process's environment as it
    is now); the kernel is shut down afterwards. Skips without ipykernel."""
    if importlib.util.find_spec("ipykernel") is None:
        pytest.skip("ipykernel is not installed: pip install -e '.[test]'")
    from jupyter_client.manager import start_new_kernel

    km, kc = start_new_kernel(kernel_name="python3")
    try:
        yield kc
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def execute(
    kc: Any, code: str, timeout: float = 120
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Run ``code`` as a person's frontend does (allow_stdin): its iopub messages, and the
    shell reply, once the kernel is idle again."""
    msg_id = kc.execute(code, allow_stdin=True)
    seen = []
    while True:
        msg = kc.get_iopub_msg(timeout=timeout)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        seen.append(msg)
        state = msg["content"].get("execution_state")
        if msg["msg_type"] == "status" and state == "idle":
            return seen, kc.get_shell_msg(timeout=60)
