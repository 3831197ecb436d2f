"""A local, OpenAI-compatible chat-completions server for tests and benchmarks, and
``FakeBatchServer``, OpenAI's Files and Batches endpoints (see ``batches``).

``FakeOpenAIServer`` answers ``POST /v1/chat/completions`` on ``127.0.0.1`` with
controlled replies, latency and faults, so that code built on litellm can be exercised
through litellm's real HTTP client without a network or an API key. It uses only the
standard library.

Example::

    import asyncio
    import litellm
    from nbtoolkit.testing import FakeOpenAIServer, Fault

    with FakeOpenAIServer(reply="The answer is 42", faults={0: Fault.RATE_LIMIT}) as server:
        call = litellm.acompletion(
            model="openai/fake-model",
            api_base=server.base_url,
            api_key="sk-test-not-real",
            messages=[{"role": "user", "content": "hi"}],
            max_retries=0,  # otherwise the openai client retries by itself
            timeout=5,
        )
        try:
            asyncio.run(call)  # request 0 is answered with a 429
        except litellm.RateLimitError:
            pass
        assert server.request_count == 1
        assert server.faults_served == [(0, Fault.RATE_LIMIT)]
"""

from __future__ import annotations

from .batches import FakeBatchServer
from .faults import Fault, FaultKind, FaultSpec, Reply
from .server import FakeOpenAIServer

__all__ = ["FakeBatchServer", "FakeOpenAIServer", "Fault", "FaultKind", "FaultSpec", "Reply"]
