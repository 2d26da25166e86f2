from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from projects.models import Organization, ProviderAccount
from usage.simulator.server import ProviderSimulator, SimClock
from usage.simulator.world import DEFAULT_WORLD

from .. import factories
from .analytics_data import frozen_now, usage_data  # noqa: F401  (analytics fixtures)
from .loopback import Loopback

# The simulator's "now" in ingest tests: fixed, so every window and oracle is reproducible.
SIM_NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


@pytest.fixture
def loopback() -> Iterator[Loopback]:
    """A loopback HTTP server replaying recorded provider responses."""
    server = Loopback()
    yield server
    server.stop()


@pytest.fixture
def simulator() -> Iterator[ProviderSimulator]:
    """The provider simulator on a free loopback port, its clock fixed at SIM_NOW."""
    sim = ProviderSimulator(clock=SimClock(SIM_NOW))
    sim.start()
    yield sim
    sim.stop()


def sim_account(org: Organization, sim: ProviderSimulator, slug: str, **overrides: object) -> ProviderAccount:
    """Return a ProviderAccount pointing at the simulator's account ``slug`` with its real credential."""
    world = DEFAULT_WORLD.account(slug)
    fields: dict[str, object] = {
        "slug": slug,
        "name": world.name,
        "base_url": sim.account_url(slug),
        "newapi_user_id": world.newapi_user_id,
        "quota_per_unit": world.quota_per_unit,
        "currency": world.currency,
        "credential": world.credential,
    }
    fields.update(overrides)
    return factories.make_account(org, world.kind, **fields)  # type: ignore[arg-type]
