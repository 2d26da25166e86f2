"""Month exports for finance: the usage CSV and a FOCUS-aligned cost file, both streamed.

Rows come from ``QuerySet.iterator()`` (a server-side cursor on PostgreSQL, chunked fetches on SQLite)
through ``usage.exports.stream_csv``, which quotes per RFC 4180 with the csv module and prefixes
text cells that a spreadsheet would read as a formula (= + - @ tab CR NUL) with "'". Amounts are
written as plain decimals, so -12.50 stays a number.

FOCUS conventions (FinOps Open Cost and Usage Specification 1.x; columns we cannot fill are left out):
- Usage rows: one per local day x project x key x model x provider account x currency. Usage drawn
  from a prepaid provider balance was already paid by the top-up that bought the credit, so it has
  BilledCost 0 and EffectiveCost = cost; usage without a provider account (push/import) is billed as
  it occurs (BilledCost = EffectiveCost = cost). ListCost is the provider-reported or price-list cost:
  Quotaboard keeps no separate list price.
- Purchase rows: top-ups credited in the month, BilledCost = amount paid, EffectiveCost 0 (it turns
  into usage rows' EffectiveCost as it is consumed).
- Credit rows: bonus credit and grants, nothing billed (0), the credited value in x_CreditAmount.
- InvoiceIssuerName is who bills us (the reseller gateway for New API / One API / OpenRouter
  accounts); ServiceProviderName is the model's vendor (OpenAI for gpt-4o bought through a reseller).
- SubAccountId/SubAccountName = project, SkuId = model; x_TokenType names the token classes counted
  in ConsumedQuantity (per-class counts in the x_*Tokens columns: cost is not split by class).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from django.db.models import Q, Sum

from projects.models import GATEWAY_KINDS, Organization, ProviderKind
from usage.models import RecordStatus, UsageDaily
from usage.services import local_day_bounds

from .models import TopUp, TopUpSource, TopUpStatus
from .review import MonthWindow

CHUNK = 2000
ZERO = Decimal(0)
CENT = Decimal("0.01")
NIL = Decimal("0.00")  # a zero cost cell, written "0.00"


def exact_amount(amount: Decimal) -> Decimal:
    """The exact amount with at least two decimals and no trailing storage zeros: -12.50, 0.0000000007."""
    normal = amount.normalize()
    exponent = normal.as_tuple().exponent
    return normal.quantize(CENT) if isinstance(exponent, int) and exponent > -2 else normal


USAGE_COLUMNS = [
    "day",
    "project",
    "project_slug",
    "api_key",
    "provider_account",
    "model",
    "input_tokens",
    "uncached_input_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "output_tokens",
    "reasoning_tokens",
    "requests",
    "failed_requests",
    "cost",
    "currency",
]

_GROUP = (
    "day",
    "project__name",
    "project__slug",
    "api_key__name",
    "provider_account__name",
    "provider_account__kind",
    "model",
    "currency",
)


def _grouped_usage(*, organization: Organization, window: MonthWindow) -> Any:
    """Rollup rows of the month grouped over status and error code; the database does the grouping."""
    return (
        UsageDaily.objects.filter(organization=organization, day__gte=window.first, day__lte=window.last)
        .values(*_GROUP)
        .annotate(
            s_input=Sum("input_tokens"),
            s_cache_read=Sum("cache_read_tokens"),
            s_cache_write=Sum("cache_write_tokens"),
            s_output=Sum("output_tokens"),
            s_reasoning=Sum("reasoning_tokens"),
            s_requests=Sum("requests"),
            s_failed=Sum("requests", filter=Q(status=RecordStatus.ERROR)),
            s_cost=Sum("cost"),
        )
        .order_by(*_GROUP)
        .iterator(chunk_size=CHUNK)
    )


def month_usage_rows(*, organization: Organization, window: MonthWindow) -> Iterator[list[object]]:
    """Yield the usage CSV rows (USAGE_COLUMNS) for the month, streaming."""
    for r in _grouped_usage(organization=organization, window=window):
        inp, cr, cw = r["s_input"] or 0, r["s_cache_read"] or 0, r["s_cache_write"] or 0
        yield [
            r["day"],
            r["project__name"] or "Unassigned",
            r["project__slug"] or "",
            r["api_key__name"] or "",
            r["provider_account__name"] or "",
            r["model"],
            inp,
            inp - cr - cw,
            cr,
            cw,
            r["s_output"] or 0,
            r["s_reasoning"] or 0,
            r["s_requests"] or 0,
            r["s_failed"] or 0,
            exact_amount(r["s_cost"] or ZERO),
            r["currency"],
        ]


# --- FOCUS ------------------------------------------------------------------------------------------

FOCUS_COLUMNS = [
    "BillingAccountId",
    "BillingAccountName",
    "BillingPeriodStart",
    "BillingPeriodEnd",
    "ChargePeriodStart",
    "ChargePeriodEnd",
    "ChargeCategory",
    "ChargeFrequency",
    "ChargeDescription",
    "BilledCost",
    "EffectiveCost",
    "ListCost",
    "BillingCurrency",
    "ConsumedQuantity",
    "ConsumedUnit",
    "ServiceProviderName",
    "InvoiceIssuerName",
    "ServiceName",
    "ServiceCategory",
    "SubAccountId",
    "SubAccountName",
    "SkuId",
    "x_TokenType",
    "x_ApiKey",
    "x_ProviderAccount",
    "x_InputTokens",
    "x_CacheReadTokens",
    "x_CacheWriteTokens",
    "x_OutputTokens",
    "x_Requests",
    "x_FailedRequests",
    "x_CreditAmount",
]

# Model-name prefixes -> vendor, for "who made the model" when a reseller sold it.
VENDOR_PREFIXES = (
    (
        ("gpt-", "o1", "o3", "o4", "chatgpt", "text-embedding", "dall-e", "whisper", "tts-", "davinci"),
        "OpenAI",
    ),
    (("claude",), "Anthropic"),
    (("deepseek",), "DeepSeek"),
    (("gemini", "gemma", "imagen", "veo"), "Google"),
    (("llama", "meta-llama"), "Meta"),
    (("mistral", "mixtral", "codestral", "pixtral", "ministral"), "Mistral AI"),
    (("qwen", "qwq"), "Alibaba Cloud"),
    (("grok",), "xAI"),
    (("glm", "chatglm"), "Zhipu AI"),
    (("moonshot", "kimi"), "Moonshot AI"),
    (("command", "embed-", "rerank"), "Cohere"),
)
DIRECT_NAMES: dict[str, str] = {
    ProviderKind.OPENAI: "OpenAI",
    ProviderKind.ANTHROPIC: "Anthropic",
    ProviderKind.DEEPSEEK: "DeepSeek",
}
VENDOR_SLUGS = {
    "openai": "OpenAI",
    "anthropic": "Anthropic",
    "deepseek": "DeepSeek",
    "google": "Google",
    "meta-llama": "Meta",
    "mistralai": "Mistral AI",
    "qwen": "Alibaba Cloud",
    "x-ai": "xAI",
    "cohere": "Cohere",
    "moonshotai": "Moonshot AI",
}


def model_vendor(model: str) -> str:
    """Return the vendor that makes ``model`` ("openai/gpt-4o" and "gpt-4o" -> "OpenAI"); "" if unknown."""
    name = model.strip().lower()
    if "/" in name:
        slug, _, rest = name.partition("/")
        if slug in VENDOR_SLUGS:
            return VENDOR_SLUGS[slug]
        name = rest
    for prefixes, vendor in VENDOR_PREFIXES:
        if name.startswith(prefixes):
            return vendor
    return ""


def issuer_and_provider(*, kind: str | None, account_name: str, model: str) -> tuple[str, str]:
    """Return (InvoiceIssuerName, ServiceProviderName) for a usage row."""
    vendor = model_vendor(model)
    if kind in DIRECT_NAMES:
        name = DIRECT_NAMES[kind]
        return name, vendor or name
    if kind in GATEWAY_KINDS or kind == ProviderKind.OPENROUTER:
        return account_name, vendor or account_name
    return vendor or "Unknown", vendor or "Unknown"


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def month_focus_rows(*, organization: Organization, window: MonthWindow) -> Iterator[list[object]]:
    """Yield FOCUS rows (FOCUS_COLUMNS): usage per day and line, then purchases and credits."""
    tz = organization.zoneinfo
    period_start, period_end = _iso(window.start), _iso(window.end)
    day_bounds: dict[date, tuple[str, str]] = {}

    def bounds(day: date) -> tuple[str, str]:
        if day not in day_bounds:
            start, end = local_day_bounds(day, day, tz)
            day_bounds[day] = (_iso(start), _iso(end))
        return day_bounds[day]

    common = [organization.slug, organization.name, period_start, period_end]
    for r in _grouped_usage(organization=organization, window=window):
        start, end = bounds(r["day"])
        cost = exact_amount(r["s_cost"] or ZERO)
        inp, out = r["s_input"] or 0, r["s_output"] or 0
        requests = r["s_requests"] or 0
        kind = r["provider_account__kind"]
        account = r["provider_account__name"] or ""
        issuer, provider = issuer_and_provider(kind=kind, account_name=account, model=r["model"])
        prepaid = kind is not None
        if inp or out:
            quantity, unit, token_type = inp + out, "Tokens", "input+output"
        else:
            quantity, unit, token_type = requests, "Requests", ""
        yield [
            *common,
            start,
            end,
            "Usage",
            "Usage-Based",
            f"{r['model']} usage",
            NIL if prepaid else cost,
            cost,
            cost,
            r["currency"],
            quantity,
            unit,
            provider,
            issuer,
            "LLM inference",
            "AI and Machine Learning",
            r["project__slug"] or "",
            r["project__name"] or "Unassigned",
            r["model"],
            token_type,
            r["api_key__name"] or "",
            account,
            inp,
            r["s_cache_read"] or 0,
            r["s_cache_write"] or 0,
            out,
            requests,
            r["s_failed"] or 0,
            "",
        ]
    topups = (
        TopUp.objects.filter(
            provider_account__organization=organization,
            status=TopUpStatus.CREDITED,
            credited_at__gte=window.start,
            credited_at__lt=window.end,
        )
        .select_related("provider_account")
        .order_by("credited_at", "pk")
        .iterator(chunk_size=CHUNK)
    )
    for topup in topups:
        account = topup.provider_account
        credited = topup.credited_at or topup.created_at
        start, end = bounds(credited.astimezone(tz).date())
        issuer = DIRECT_NAMES.get(account.kind, account.name)
        ref = topup.order_ref or f"top-up {topup.pk}"
        base = [*common, start, end]
        tail_common = ["", "", account.name, "", "", "", "", "", ""]
        if topup.amount:
            is_grant = topup.source == TopUpSource.GRANT
            yield [
                *base,
                "Credit" if is_grant else "Purchase",
                "One-Time",
                f"{'Granted credit' if is_grant else 'Top-up'} {ref}",
                NIL if is_grant else exact_amount(topup.amount),
                NIL,
                NIL if is_grant else exact_amount(topup.amount),
                topup.currency,
                "",
                "",
                issuer,
                issuer,
                "Prepaid credit",
                "AI and Machine Learning",
                "",
                "",
                "",
                *tail_common,
                exact_amount(topup.amount) if is_grant else "",
            ]
        if topup.bonus:
            yield [
                *base,
                "Credit",
                "One-Time",
                f"Bonus credit with {ref}",
                NIL,
                NIL,
                NIL,
                topup.currency,
                "",
                "",
                issuer,
                issuer,
                "Prepaid credit",
                "AI and Machine Learning",
                "",
                "",
                "",
                *tail_common,
                exact_amount(topup.bonus),
            ]
