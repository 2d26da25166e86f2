"""A loopback simulator of the provider APIs Quotaboard reads (shared/docs/providers.md).

``world`` describes six accounts, their keys and projects; ``generator`` produces deterministic
traffic for them; ``server`` serves it in each provider's own format, with faults, revisions and
an oracle for tests. The demo seed, connector tests, fault tests and benchmarks all use it.
"""

from __future__ import annotations

from .generator import SimEvent, SimTopUp, events_for, topups_for
from .server import BalanceState, ExpectedTotals, ProviderSimulator, RequestRecord, SimClock
from .world import DEFAULT_WORLD, PRICES, World, WorldAccount, WorldKey, WorldProject

__all__ = [
    "DEFAULT_WORLD",
    "PRICES",
    "BalanceState",
    "ExpectedTotals",
    "ProviderSimulator",
    "RequestRecord",
    "SimClock",
    "SimEvent",
    "SimTopUp",
    "World",
    "WorldAccount",
    "WorldKey",
    "WorldProject",
    "events_for",
    "topups_for",
]
