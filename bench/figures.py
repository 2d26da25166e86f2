"""A bench figure (value beside a baseline from the same run), the run's list of them, and timing helpers."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Figure:
    name: str
    value: float
    unit: str
    baseline_name: str = ""
    baseline: float | None = None
    target: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    # "value/baseline" (throughput, share of a baseline's time) or "baseline/value" (how many times faster).
    ratio_kind: str = "value/baseline"

    @property
    def ratio(self) -> float | None:
        if not self.baseline or not self.value:
            return None
        return (
            self.value / self.baseline if self.ratio_kind == "value/baseline" else self.baseline / self.value
        )


class Figures(list[Figure]):
    """The run's figures; each is also printed as soon as it is measured, so a run stopped early
    (a 10M run takes about an hour on a shared 2-core machine) still leaves what it got in its log."""

    def append(self, figure: Figure) -> None:
        super().append(figure)
        if figure.target.startswith("not measured"):
            print(f"  {figure.name}: {figure.target}", flush=True)
            return
        ratio = f" ({figure.ratio:.2f}x {figure.baseline_name})" if figure.ratio is not None else ""
        print(f"  measured {figure.name}: {figure.value:,.1f} {figure.unit}{ratio}", flush=True)


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def percentiles(samples: list[float]) -> tuple[float, float]:
    """Return the p50 and the nearest-rank p95 of ``samples``."""
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return statistics.median(ordered), p95
