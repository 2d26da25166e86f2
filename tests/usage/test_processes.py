"""The seeding helpers that move the simulator and the connectors into child processes."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from usage.providers.http import AuthError
from usage.providers.process import ConnectorProcess
from usage.providers.registry import account_config, connector_class
from usage.simulator.process import SimulatorProcess
from usage.simulator.server import ProviderSimulator, SimClock

from .conftest import SIM_NOW, sim_account

pytestmark = pytest.mark.django_db


def test_a_child_process_simulator_serves_the_same_rows_and_follows_its_clock() -> None:
    """Same seed and clock as an in-process simulator: the same rows (natural keys) come back."""
    org_sim = ProviderSimulator(clock=SimClock(SIM_NOW))
    org_sim.start()
    child = SimulatorProcess(seed=org_sim.seed, now=SIM_NOW, warm=False)
    child.start()
    try:
        from tests import factories

        org = factories.make_org()
        here = sim_account(org, org_sim, "reseller")
        config = account_config(here)
        start, end = SIM_NOW - timedelta(hours=3), SIM_NOW
        in_process = connector_class("newapi")(config)
        in_child = connector_class("newapi")(replace(config, base_url=child.account_url("reseller")))
        try:
            expected = [row for page in in_process.fetch_usage(start, end) for row in page.rows]
            got = [row for page in in_child.fetch_usage(start, end) for row in page.rows]
            assert got == expected and len(got) > 10

            # Steering the child's clock back hides the later rows, as the in-process clock would.
            child.set_clock(SIM_NOW - timedelta(hours=2))
            earlier = [row for page in in_child.fetch_usage(start, end) for row in page.rows]
            assert 0 < len(earlier) < len(got)
            assert all(row.occurred_at < SIM_NOW - timedelta(hours=2) for row in earlier)
            assert child.topups("reseller") == org_sim.topups("reseller")
        finally:
            in_process.close()
            in_child.close()
    finally:
        child.stop()
        org_sim.stop()


def test_a_connector_in_a_child_process_returns_the_same_pages_and_raises_provider_errors(
    simulator: ProviderSimulator,
) -> None:
    from tests import factories

    org = factories.make_org()
    account = sim_account(org, simulator, "reseller")
    config = account_config(account)
    start, end = SIM_NOW - timedelta(hours=5), SIM_NOW
    readers = ConnectorProcess()
    readers.start()
    try:
        remote = readers.connector(config)
        local = connector_class("newapi")(config)
        try:
            assert remote.chunk == local.chunk and remote.has_usage and not remote.has_balance
            assert list(remote.fetch_usage(start, end)) == list(local.fetch_usage(start, end))
        finally:
            local.close()
            remote.close()

        # A wrong credential fails in the child; the parent sees the same error type, no secret.
        wrong = readers.connector(replace(config, credential="sk-wrong-credential"))
        with pytest.raises(AuthError) as raised:
            list(wrong.fetch_usage(start, end))
        assert "sk-wrong-credential" not in str(raised.value)
        wrong.close()
    finally:
        readers.close()
