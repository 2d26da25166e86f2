"""Run a connector in a child process and hand its parsed pages back over a pipe.

Why: reading a provider is pure Python (HTTP, JSON, parsing each row), and so is writing the rows.
In one process the two take turns for the GIL; with the connector in its own process, reading runs
on another core while this process writes. ``seed_demo`` uses it to read 90 days of usage quickly;
the Celery ingest keeps its connector in-process (one account's reading is not CPU-bound there).
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Iterator
from datetime import datetime
from multiprocessing.connection import Connection
from typing import Any

from ..child_process import spawn_child, stop_child
from .base import AccountConfig, Connector, CostLine, UsagePage

START_TIMEOUT = 60.0  # seconds for the child to import Django and build the connector


def _serve(conn: Connection) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from .registry import connector_class

    connectors: dict[AccountConfig, Connector] = {}
    try:
        conn.send(("ready", None))
        while True:
            command, config, start, end = conn.recv()
            if command == "stop":
                break
            try:
                if command == "close":  # a connector never used has nothing to close
                    closing = connectors.pop(config, None)
                    if closing is not None:
                        closing.close()
                    conn.send(("ok", None))
                    continue
                if config not in connectors:
                    connectors[config] = connector_class(config.kind)(config)
                connector = connectors[config]
                if command == "usage":
                    conn.send(("ok", list(connector.fetch_usage(start, end))))
                elif command == "costs":
                    conn.send(("ok", connector.fetch_costs(start, end)))
                else:
                    conn.send(("error", RuntimeError(f"unknown command {command!r}")))
            except Exception as error:  # handed to the parent, which raises it in its own frame
                conn.send(("error", error))
    except EOFError:
        pass  # the parent went away
    finally:
        for connector in connectors.values():
            connector.close()
        conn.close()


class ConnectorProcess:
    """A child process that runs connectors for this one; ``connector(config)`` gives a proxy.

    Start it early (``start``) and it imports Django while the caller does other work; the first
    call waits for it. One call at a time: the proxies share one pipe.
    """

    def __init__(self) -> None:
        self._conn: Connection | None = None
        self._process: multiprocessing.process.BaseProcess | None = None
        self._ready = False

    def start(self) -> None:
        self._conn, self._process = spawn_child(_serve)

    def connector(self, config: AccountConfig) -> RemoteConnector:
        return RemoteConnector(self, config)

    def call(self, command: str, config: AccountConfig, start: datetime | None, end: datetime | None) -> Any:
        if self._conn is None:
            raise RuntimeError("the connector process is not running")
        if not self._ready:
            if not self._conn.poll(START_TIMEOUT):
                raise RuntimeError("the connector process did not start in time")
            self._conn.recv()
            self._ready = True
        self._conn.send((command, config, start, end))
        status, payload = self._conn.recv()
        if status == "error":
            raise payload
        return payload

    def close(self) -> None:
        stop_child(self._conn, self._process, ("stop", None, None, None))
        self._conn, self._process = None, None


class RemoteConnector(Connector):
    """The connector of ``config.kind`` run by a ``ConnectorProcess``: usage and cost reports only.

    Pages come back whole per call (a chunk at a time). Provider errors raised in the child are
    raised again here with the same type, so ingest classifies them as usual.
    """

    def __init__(self, process: ConnectorProcess, config: AccountConfig) -> None:
        # No HTTP client here (Connector.__init__ is not called): the child process has it.
        from .registry import connector_class

        real = connector_class(config.kind)
        self.config = config
        self.kind = real.kind  # type: ignore[misc]
        self.chunk = real.chunk  # type: ignore[misc]
        self.overlap = real.overlap  # type: ignore[misc]
        self.has_usage = real.has_usage  # type: ignore[misc]
        self.has_costs = real.has_costs  # type: ignore[misc]
        self.has_balance = False  # type: ignore[misc]
        self.has_topups = False  # type: ignore[misc]
        self._process = process

    def fetch_usage(self, start: datetime, end: datetime) -> Iterator[UsagePage]:
        pages: list[UsagePage] = self._process.call("usage", self.config, start, end)
        return iter(pages)

    def fetch_costs(self, start: datetime, end: datetime) -> list[CostLine]:
        costs: list[CostLine] = self._process.call("costs", self.config, start, end)
        return costs

    def close(self) -> None:
        self._process.call("close", self.config, None, None)
