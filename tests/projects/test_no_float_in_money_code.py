"""M1: money and ingest code never converts to float (the suite also traps decimal.FloatOperation)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Chart code is exempt: Plotly needs JSON numbers for coordinates; its hover text is exact.
MONEY_MODULES = [
    "projects/money.py",
    "usage/services.py",
    "usage/selectors.py",
    "usage/providers",
    "billing/services.py",
    "billing/selectors.py",
    "billing/models.py",
    "usage/models.py",
]


def test_no_float_calls_in_money_modules() -> None:
    offenders = []
    for entry in MONEY_MODULES:
        path = ROOT / entry
        files = sorted(path.rglob("*.py")) if path.is_dir() else [path] if path.exists() else []
        for file in files:
            for number, line in enumerate(file.read_text().splitlines(), 1):
                code = line.split("#", 1)[0]
                if re.search(r"\bfloat\(", code) and "isinstance" not in code:
                    offenders.append(f"{file.relative_to(ROOT)}:{number}: {line.strip()}")
    assert offenders == []


def test_float_operation_is_trapped_in_tests() -> None:
    import decimal

    import pytest

    with pytest.raises(decimal.FloatOperation):
        decimal.Decimal("1") + decimal.Decimal(0.5)  # noqa: RUF032
