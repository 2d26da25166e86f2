"""Ship list prices for common models (providers.md §6), editable in admin afterwards.

Figures are USD per 1M tokens from LiteLLM's model_prices_and_context_window.json, version named
in each row's ``source``. Direct-Anthropic keys for retired models come from 1.77.7 because 1.109.1
dropped them. Dated snapshot names (what the usage APIs report) reuse their base model's figures.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from django.db import migrations

SINCE = date(2024, 1, 1)
# DeepSeek cut prices with V3.2-Exp on 2025-09-29; 1.77.7 still had the older figures.
DEEPSEEK_CUT = date(2025, 9, 29)
NEW = "LiteLLM 1.109.1 model_prices_and_context_window_backup.json"
OLD = "LiteLLM 1.77.7 model_prices_and_context_window_backup.json"

# (provider_kind, model, effective_from, input, output, cache_read, cache_write_5m, source, aliases)
PRICES = [
    ("openai", "gpt-4o", SINCE, "2.5", "10", "1.25", None, NEW, ["gpt-4o-2024-08-06", "gpt-4o-2024-11-20"]),
    ("openai", "gpt-4o-mini", SINCE, "0.15", "0.6", "0.075", None, NEW, ["gpt-4o-mini-2024-07-18"]),
    ("openai", "gpt-4.1", SINCE, "2", "8", "0.5", None, NEW, ["gpt-4.1-2025-04-14"]),
    ("openai", "gpt-4.1-mini", SINCE, "0.4", "1.6", "0.1", None, NEW, ["gpt-4.1-mini-2025-04-14"]),
    ("openai", "o3", SINCE, "2", "8", "0.5", None, NEW, ["o3-2025-04-16"]),
    ("openai", "o4-mini", SINCE, "1.1", "4.4", "0.275", None, NEW, ["o4-mini-2025-04-16"]),
    ("openai", "gpt-3.5-turbo", SINCE, "0.5", "1.5", None, None, NEW, ["gpt-3.5-turbo-0125"]),
    ("openai", "gpt-4-turbo", SINCE, "10", "30", None, None, NEW, ["gpt-4-turbo-2024-04-09"]),
    ("anthropic", "claude-3-5-sonnet-20241022", SINCE, "3", "15", "0.3", "3.75", OLD, []),
    ("anthropic", "claude-sonnet-4-20250514", SINCE, "3", "15", "0.3", "3.75", OLD, ["claude-sonnet-4-0"]),
    ("anthropic", "claude-opus-4-20250514", SINCE, "15", "75", "1.5", "18.75", OLD, ["claude-opus-4-0"]),
    ("anthropic", "claude-3-5-haiku-20241022", SINCE, "0.8", "4", "0.08", "1", OLD, ["claude-3-5-haiku-latest"]),
    ("anthropic", "claude-sonnet-4-5", SINCE, "3", "15", "0.3", "3.75", NEW, ["claude-sonnet-4-5-20250929"]),
    ("anthropic", "claude-haiku-4-5", SINCE, "1", "5", "0.1", "1.25", NEW, ["claude-haiku-4-5-20251001"]),
    ("anthropic", "claude-opus-4-6", SINCE, "5", "25", "0.5", "6.25", NEW, []),
    ("anthropic", "claude-opus-4-5", SINCE, "5", "25", "0.5", "6.25", NEW, ["claude-opus-4-5-20251101"]),
    ("anthropic", "claude-opus-4-7", SINCE, "5", "25", "0.5", "6.25", NEW, []),
    ("anthropic", "claude-opus-4-8", SINCE, "5", "25", "0.5", "6.25", NEW, []),
    ("deepseek", "deepseek-chat", SINCE, "0.27", "1.1", "0.07", "0", OLD, []),
    ("deepseek", "deepseek-reasoner", SINCE, "0.55", "2.19", "0.14", None, OLD, []),
    ("deepseek", "deepseek-chat", DEEPSEEK_CUT, "0.28", "0.42", "0.028", "0", NEW, []),
    ("deepseek", "deepseek-reasoner", DEEPSEEK_CUT, "0.28", "0.42", "0.028", None, NEW, []),
]


def _dec(value: str | None) -> Decimal | None:
    return Decimal(value) if value is not None else None


def add_prices(apps, schema_editor):  # type: ignore[no-untyped-def]
    ModelPrice = apps.get_model("usage", "ModelPrice")
    for kind, model, since, inp, out, read, write, source, aliases in PRICES:
        for name in [model, *aliases]:
            ModelPrice.objects.get_or_create(
                provider_kind=kind,
                model=name,
                effective_from=since,
                defaults={
                    "currency": "USD",
                    "input_per_1m": Decimal(inp),
                    "output_per_1m": Decimal(out),
                    "cache_read_per_1m": _dec(read),
                    "cache_write_per_1m": _dec(write),
                    "source": f"{source}: {model}" + (" (dated alias)" if name != model else ""),
                },
            )


def remove_prices(apps, schema_editor):  # type: ignore[no-untyped-def]
    ModelPrice = apps.get_model("usage", "ModelPrice")
    ModelPrice.objects.filter(source__startswith="LiteLLM ").delete()


class Migration(migrations.Migration):
    dependencies = [("usage", "0002_ingest_run_error_kind")]

    operations = [migrations.RunPython(add_prices, remove_prices)]
