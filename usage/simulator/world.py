"""The simulated world: six provider accounts, their keys, and the projects those keys belong to.

Everything here is static configuration; ``generator.py`` turns it into traffic and
``server.py`` serves that traffic in each provider's own format (shared/docs/providers.md).
Keys with ``project_slug=None`` are deliberately unassigned, so the "unassigned spend" path
always has data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal


@dataclass(frozen=True)
class WorldProject:
    slug: str
    name: str
    environment: str


@dataclass(frozen=True)
class WorldKey:
    """One API key at one account.

    ``external_id`` is what the provider's usage data carries for the key: the token *name* for
    New API / One API (the only key field both log shapes share), ``key_...`` for OpenAI,
    ``apikey_...`` for Anthropic, the key hash for OpenRouter. ``weight`` is the key's share of
    the account's traffic; ``models`` narrows the account's model mix for this key.
    """

    account_slug: str
    external_id: str
    name: str
    project_slug: str | None
    weight: int = 10
    models: tuple[str, ...] = ()


@dataclass(frozen=True)
class ExternalProject:
    """A provider-side grouping (OpenAI project, Anthropic workspace) and the world project it maps to."""

    external_id: str | None
    name: str
    project_slug: str | None
    archived: bool = False


@dataclass(frozen=True)
class WorldAccount:
    slug: str
    kind: str
    name: str
    credential: str
    currency: str
    keys: tuple[WorldKey, ...]
    # Model name (as the provider reports it) -> relative weight in the traffic mix.
    model_mix: tuple[tuple[str, int], ...]
    # Requests per average weekday at the start of the 90-day window (grows slowly after that).
    daily_requests: int
    newapi_user_id: int | None = None
    quota_per_unit: int = 500_000
    # Gateways: opening balance in currency units; others: prepaid credit. Top-ups keep it positive.
    opening_balance: Decimal = Decimal("100")
    topup_amount: Decimal = Decimal("200")
    group: str = "default"
    # Tokens per request are log-normal around these medians.
    prompt_median: int = 900
    completion_median: int = 220
    external_projects: tuple[ExternalProject, ...] = ()
    # OpenRouter only: a second, non-management key that /credits and /activity refuse.
    inference_credential: str = ""
    # New API only: the key whose retry storm of failed requests fills one day ~10 days before the anchor.
    storm_key: str = ""

    def external_project(self, project_slug: str | None) -> ExternalProject | None:
        """The provider-side project/workspace a world project's keys live in (default one if unmapped)."""
        default = None
        for external in self.external_projects:
            if external.project_slug == project_slug and not external.archived:
                return external
            if external.project_slug is None and not external.archived and default is None:
                default = external
        return default

    def key(self, external_id: str) -> WorldKey:
        for key in self.keys:
            if key.external_id == external_id:
                return key
        raise KeyError(external_id)

    @property
    def is_gateway(self) -> bool:
        return self.kind in ("newapi", "oneapi")


# eq=False: worlds compare and hash by identity, which keeps the generator's caches cheap.
@dataclass(frozen=True, eq=False)
class World:
    projects: tuple[WorldProject, ...]
    accounts: tuple[WorldAccount, ...]
    # Accounts open this many days before the anchor day, so balances have a history to come from.
    history_days: int = 100
    _by_slug: dict[str, WorldAccount] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        self._by_slug.update({account.slug: account for account in self.accounts})

    def account(self, slug: str) -> WorldAccount:
        try:
            return self._by_slug[slug]
        except KeyError:
            raise KeyError(f"no simulated account {slug!r}") from None

    @property
    def keys(self) -> tuple[WorldKey, ...]:
        return tuple(key for account in self.accounts for key in account.keys)


@dataclass(frozen=True)
class Price:
    """List price per 1M tokens in the account's currency (providers.md §6; DeepSeek in CNY)."""

    input: Decimal
    output: Decimal
    cache_read: Decimal | None = None
    cache_write: Decimal | None = None


def _p(inp: str, out: str, read: str | None = None, write: str | None = None) -> Price:
    return Price(
        Decimal(inp), Decimal(out), Decimal(read) if read else None, Decimal(write) if write else None
    )


# USD per 1M tokens from LiteLLM 1.109.1 / 1.77.7 (providers.md §6). Gateway and OpenRouter names
# map onto the same figures; DeepSeek's own account is billed in CNY at its CNY list price.
PRICES: dict[str, Price] = {
    "gpt-4o": _p("2.5", "10", "1.25"),
    "gpt-4o-mini": _p("0.15", "0.6", "0.075"),
    "gpt-4.1": _p("2", "8", "0.5"),
    "gpt-4.1-mini": _p("0.4", "1.6", "0.1"),
    "o3": _p("2", "8", "0.5"),
    "o4-mini": _p("1.1", "4.4", "0.275"),
    "gpt-3.5-turbo": _p("0.5", "1.5"),
    "gpt-4-turbo": _p("10", "30"),
    "claude-sonnet-4-5": _p("3", "15", "0.3", "3.75"),
    "claude-haiku-4-5": _p("1", "5", "0.1", "1.25"),
    "claude-opus-4-6": _p("5", "25", "0.5", "6.25"),
    "deepseek-chat": _p("0.28", "0.42", "0.028"),
    "deepseek-reasoner": _p("0.28", "0.42", "0.028"),
    "gemini-2.5-flash": _p("0.3", "2.5", "0.03"),
    "gemini-2.5-pro": _p("1.25", "10", "0.125"),
    # OpenRouter slugs.
    "openai/gpt-4.1": _p("2", "8", "0.5"),
    "openai/gpt-4o-mini": _p("0.15", "0.6", "0.075"),
    "anthropic/claude-sonnet-4.5": _p("3", "15", "0.3"),
    "deepseek/deepseek-chat": _p("0.28", "0.42", "0.028"),
    "google/gemini-2.5-flash": _p("0.3", "2.5", "0.03"),
}

# DeepSeek's CNY list price (api-docs.deepseek.com pricing, V3.2): the deepseek account is a CNY account.
CNY_PRICES: dict[str, Price] = {
    "deepseek-chat": _p("2", "3", "0.2"),
    "deepseek-reasoner": _p("2", "3", "0.2"),
}


def price_for(account: WorldAccount, model: str) -> Price:
    table = CNY_PRICES if account.currency == "CNY" else PRICES
    return table[model]


PROJECTS = (
    WorldProject("chat-app", "Chat app", "production"),
    WorldProject("support-bot", "Support bot", "production"),
    WorldProject("search", "Semantic search", "staging"),
    WorldProject("agents-lab", "Agents lab", "development"),
    WorldProject("eval-suite", "Eval suite", "testing"),
    WorldProject("internal-tools", "Internal tools", "internal"),
)


def _keys(slug: str, *rows: tuple[str, str, str | None, int, tuple[str, ...]]) -> tuple[WorldKey, ...]:
    return tuple(
        WorldKey(slug, ext, name, project, weight, models) for ext, name, project, weight, models in rows
    )


RESELLER = WorldAccount(
    slug="reseller",
    kind="newapi",
    name="LaoZhang-style reseller (New API)",
    credential="sim-reseller-secret",
    currency="USD",
    newapi_user_id=42,
    daily_requests=2000,
    prompt_median=1800,
    completion_median=320,
    opening_balance=Decimal("150"),
    topup_amount=Decimal("300"),
    storm_key="batch-worker",
    model_mix=(
        ("gpt-4o-mini", 30),
        ("gpt-4o", 14),
        ("gpt-4.1-mini", 16),
        ("claude-sonnet-4-5", 12),
        ("claude-haiku-4-5", 8),
        ("deepseek-chat", 12),
        ("gemini-2.5-flash", 8),
    ),
    keys=_keys(
        "reseller",
        ("prod-chat", "prod-chat", "chat-app", 30, ()),
        (
            "support-bot",
            "support-bot",
            "support-bot",
            18,
            ("gpt-4o-mini", "claude-haiku-4-5", "gpt-4.1-mini"),
        ),
        (
            "search-indexer",
            "search-indexer",
            "search",
            14,
            ("gpt-4.1-mini", "deepseek-chat", "gemini-2.5-flash"),
        ),
        ("agents-dev", "agents-dev", "agents-lab", 10, ("claude-sonnet-4-5", "gpt-4o", "deepseek-chat")),
        ("eval-runner", "eval-runner", "eval-suite", 8, ()),
        ("batch-worker", "batch-worker", "internal-tools", 10, ("gpt-4o-mini", "deepseek-chat")),
        ("alice-laptop", "alice-laptop", None, 6, ("gpt-4o", "claude-sonnet-4-5")),
        ("old-test", "old-test", None, 4, ("gpt-4o-mini",)),
    ),
)

LEGACY_GATEWAY = WorldAccount(
    slug="legacy-gateway",
    kind="oneapi",
    name="Legacy internal gateway (One API)",
    credential="sim-legacy-gateway-secret",
    currency="USD",
    daily_requests=300,
    opening_balance=Decimal("60"),
    topup_amount=Decimal("50"),
    prompt_median=700,
    completion_median=200,
    model_mix=(("gpt-3.5-turbo", 40), ("gpt-4o-mini", 35), ("gpt-4-turbo", 10), ("deepseek-chat", 15)),
    keys=_keys(
        "legacy-gateway",
        ("crm-sync", "crm-sync", "internal-tools", 50, ()),
        ("reporting", "reporting", "internal-tools", 35, ()),
        ("old-script", "old-script", None, 15, ("gpt-3.5-turbo",)),
    ),
)

OPENAI = WorldAccount(
    slug="openai",
    kind="openai",
    name="OpenAI organization",
    credential="sim-openai-secret",
    currency="USD",
    daily_requests=3200,
    opening_balance=Decimal("0"),
    topup_amount=Decimal("0"),
    prompt_median=1400,
    completion_median=260,
    model_mix=(("gpt-4.1-mini", 35), ("gpt-4o", 20), ("gpt-4.1", 15), ("o4-mini", 15), ("gpt-4o-mini", 15)),
    external_projects=(
        ExternalProject("proj_Kc7QwZ1aChat", "Chat app", "chat-app"),
        ExternalProject("proj_R2mVxS9bSearch", "Semantic search", "search"),
        ExternalProject("proj_A8nT3pLkAgents", "Agents lab", "agents-lab"),
        ExternalProject("proj_E5vB6dQeEvals", "Eval suite", "eval-suite"),
        ExternalProject("proj_D0fLtDefault", "Default project", None),
        ExternalProject("proj_Z9oLdArchived", "2024 prototype", None, archived=True),
    ),
    keys=_keys(
        "openai",
        ("key_a1B2c3D4e5F6g7H8", "chat-prod", "chat-app", 35, ("gpt-4.1-mini", "gpt-4o", "gpt-4o-mini")),
        ("key_b2C3d4E5f6G7h8I9", "chat-canary", "chat-app", 8, ("gpt-4.1", "gpt-4.1-mini")),
        ("key_c3D4e5F6g7H8i9J0", "search-embed-rerank", "search", 20, ("gpt-4.1-mini", "gpt-4o-mini")),
        ("key_d4E5f6G7h8I9j0K1", "agents-o4", "agents-lab", 17, ("o4-mini", "gpt-4.1")),
        ("key_e5F6g7H8i9J0k1L2", "evals-nightly", "eval-suite", 12, ("gpt-4o", "o4-mini", "gpt-4.1")),
        ("key_f6G7h8I9j0K1l2M3", "playground", None, 8, ("gpt-4o", "gpt-4.1-mini")),
    ),
)

ANTHROPIC = WorldAccount(
    slug="anthropic",
    kind="anthropic",
    name="Anthropic organization",
    credential="sim-anthropic-secret",
    currency="USD",
    daily_requests=1800,
    opening_balance=Decimal("0"),
    topup_amount=Decimal("0"),
    prompt_median=2400,
    completion_median=380,
    model_mix=(("claude-sonnet-4-5", 50), ("claude-haiku-4-5", 35), ("claude-opus-4-6", 15)),
    external_projects=(
        ExternalProject("wrkspc_01SupportBotX7", "Support bot", "support-bot"),
        ExternalProject("wrkspc_01AgentsLabQ2", "Agents lab", "agents-lab"),
        ExternalProject("wrkspc_01InternalToolsK9", "Internal tools", "internal-tools"),
        ExternalProject(None, "Default", None),
    ),
    keys=_keys(
        "anthropic",
        (
            "apikey_01SupportProdA1",
            "support-prod",
            "support-bot",
            40,
            ("claude-haiku-4-5", "claude-sonnet-4-5"),
        ),
        ("apikey_01AgentsOpusB2", "agents-opus", "agents-lab", 25, ("claude-opus-4-6", "claude-sonnet-4-5")),
        ("apikey_01InternalC3", "docs-summariser", "internal-tools", 20, ("claude-haiku-4-5",)),
        ("apikey_01ConsoleD4", "console-scratch", None, 15, ("claude-sonnet-4-5",)),
    ),
)

DEEPSEEK = WorldAccount(
    slug="deepseek",
    kind="deepseek",
    name="DeepSeek platform (CNY)",
    credential="sim-deepseek-secret",
    currency="CNY",
    daily_requests=900,
    opening_balance=Decimal("200"),
    topup_amount=Decimal("300"),
    prompt_median=1600,
    completion_median=300,
    model_mix=(("deepseek-chat", 80), ("deepseek-reasoner", 20)),
    keys=_keys(
        "deepseek",
        ("ds-search", "search-cn", "search", 60, ()),
        ("ds-batch", "batch-cn", "internal-tools", 40, ()),
    ),
)

OPENROUTER = WorldAccount(
    slug="openrouter",
    kind="openrouter",
    name="OpenRouter",
    credential="sim-openrouter-secret",
    inference_credential="sim-openrouter-inference-secret",
    currency="USD",
    daily_requests=700,
    opening_balance=Decimal("50"),
    topup_amount=Decimal("100"),
    model_mix=(
        ("openai/gpt-4.1", 25),
        ("openai/gpt-4o-mini", 25),
        ("anthropic/claude-sonnet-4.5", 20),
        ("deepseek/deepseek-chat", 15),
        ("google/gemini-2.5-flash", 15),
    ),
    keys=_keys(
        "openrouter",
        ("a3f9c2e1b7d4", "sk-or-v1-a3f...d41", "agents-lab", 60, ()),
        ("7be01d9c55aa", "sk-or-v1-7be...5aa", "eval-suite", 40, ()),
    ),
)

DEFAULT_WORLD = World(
    projects=PROJECTS,
    accounts=(RESELLER, LEGACY_GATEWAY, OPENAI, ANTHROPIC, DEEPSEEK, OPENROUTER),
)
