"""Pick the connector for an account: the one place that decrypts a credential for a provider call."""

from __future__ import annotations

from projects.models import ProviderAccount

from .anthropic import AnthropicConnector
from .base import AccountConfig, Connector
from .deepseek import DeepSeekConnector
from .http import ProviderHTTP
from .newapi import NewApiConnector, OneApiConnector
from .openai import OpenAIConnector
from .openrouter import OpenRouterConnector

CONNECTORS: dict[str, type[Connector]] = {
    cls.kind: cls
    for cls in (
        NewApiConnector,
        OneApiConnector,
        OpenAIConnector,
        AnthropicConnector,
        DeepSeekConnector,
        OpenRouterConnector,
    )
}
# Paths in the connectors start at the API root; a base URL pasted with its version suffix still works.
_SUFFIXES = {"openai": "/v1", "anthropic": "/v1", "openrouter": "/api/v1"}


def connector_class(kind: str) -> type[Connector]:
    try:
        return CONNECTORS[kind]
    except KeyError as exc:
        raise ValueError(f"no connector for provider kind {kind!r}") from exc


def account_config(account: ProviderAccount) -> AccountConfig:
    """Return the connector settings of an account, credential decrypted (keep it out of logs)."""
    base = account.base_url.rstrip("/")
    suffix = _SUFFIXES.get(account.kind)
    if suffix and base.endswith(suffix):
        base = base[: -len(suffix)]
    return AccountConfig(
        kind=account.kind,
        base_url=base,
        credential=account.get_credential(),
        newapi_user_id=account.newapi_user_id,
        quota_per_unit=account.quota_per_unit,
        currency=account.currency,
        key_ids=tuple(
            account.api_keys.order_by("external_id").values_list("external_id", flat=True)
            if account.kind == "openrouter" and account.pk
            else ()
        ),
    )


def connector_for(account: ProviderAccount, *, http: ProviderHTTP | None = None) -> Connector:
    """Return a ready connector for the account; close it (``.close()``) when done."""
    return connector_class(account.kind)(account_config(account), http)
