"""The README's "push usage from your code" example, run as written against the real push API.

The OpenAI SDK is not a dependency, so a stand-in ``openai`` module returns responses shaped like the
SDK's (``usage.prompt_tokens_details`` may be None, as it is for some models); the example's httpx
client reaches the app through Django's test client instead of the network.
"""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.test import Client

from projects.services import ingest_token_create
from tests.conftest import Tenancy
from usage.models import RecordSource, UsageRecord

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_push_example() -> str:
    section = README.read_text().split("## Push usage from your code", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 1, "the push section should hold exactly one Python example"
    return blocks[0]


class DjangoTransport(httpx.BaseTransport):
    """Send httpx requests to the app through django.test.Client (same process, same test database)."""

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        skip = {"content-type", "content-length", "host"}
        response = Client().generic(
            request.method,
            request.url.raw_path.decode(),
            data=request.read(),
            content_type=request.headers.get("content-type", ""),
            headers={k: v for k, v in request.headers.items() if k.lower() not in skip},
            secure=True,
        )
        return httpx.Response(response.status_code, headers=dict(response.items()), content=response.content)


def fake_openai(*, response_id: str, cached: int | None, reasoning: int | None) -> types.ModuleType:
    def details(**fields: Any) -> Any:
        return None if all(v is None for v in fields.values()) else types.SimpleNamespace(**fields)

    def create(**kwargs: Any) -> Any:
        usage = types.SimpleNamespace(
            prompt_tokens=1000,
            completion_tokens=500,
            total_tokens=1500,
            prompt_tokens_details=details(cached_tokens=cached),
            completion_tokens_details=details(reasoning_tokens=reasoning),
        )
        return types.SimpleNamespace(id=response_id, model=kwargs["model"] + "-2024-07-18", usage=usage)

    class OpenAI:
        def __init__(self) -> None:
            self.chat = types.SimpleNamespace(completions=types.SimpleNamespace(create=create))

    module = types.ModuleType("openai")
    module.OpenAI = OpenAI  # type: ignore[attr-defined]
    return module


@pytest.mark.parametrize(("cached", "reasoning"), [(200, 64), (None, None)])
def test_the_readme_example_pushes_the_calls_usage_once(
    tenancy: Tenancy, monkeypatch: pytest.MonkeyPatch, cached: int | None, reasoning: int | None
) -> None:
    _token, secret = ingest_token_create(organization=tenancy.org, name="readme", created_by=None)
    monkeypatch.setenv("QUOTABOARD_TOKEN", secret)
    monkeypatch.setitem(
        sys.modules, "openai", fake_openai(response_id="chatcmpl-1", cached=cached, reasoning=reasoning)
    )
    real_client = httpx.Client
    monkeypatch.setattr(httpx, "Client", lambda **kw: real_client(transport=DjangoTransport(), **kw))
    namespace: dict[str, Any] = {"__name__": "readme_example"}
    exec(compile(readme_push_example(), "README.md", "exec"), namespace)

    namespace["chat"]([{"role": "user", "content": "hi"}])
    namespace["chat"]([{"role": "user", "content": "hi"}])  # same response id: a duplicate

    stored = UsageRecord.objects.get(organization=tenancy.org)
    assert stored.source == RecordSource.PUSH
    assert stored.model == "gpt-4o-mini-2024-07-18"
    assert (stored.input_tokens, stored.cache_read_tokens) == (1000, cached or 0)
    assert (stored.output_tokens, stored.reasoning_tokens) == (500, reasoning or 0)
    assert stored.project_id == tenancy.project.pk
    assert stored.api_key is not None and stored.api_key.name == "chat-backend"
    assert stored.latency_ms is not None
