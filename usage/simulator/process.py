"""Serve a ProviderSimulator from a child process and steer its clock over a pipe.

Why a process and not the usual daemon thread: generating and encoding pages is pure Python, so in
a thread it takes turns with the reader for the GIL. In its own process it runs on another core
while the reader parses and writes, which roughly halves the time ``seed_demo`` spends reading
90 days of usage.
"""

from __future__ import annotations

import multiprocessing
from datetime import datetime
from multiprocessing.connection import Connection
from types import TracebackType
from typing import Any

from ..child_process import spawn_child, stop_child
from .generator import SimTopUp
from .server import ProviderSimulator, SimClock

START_TIMEOUT = 120.0  # seconds: the child generates every account's history before it answers


def _serve(conn: Connection, seed: int, now: datetime, warm: bool) -> None:
    clock = SimClock(now)
    simulator = ProviderSimulator(seed=seed, clock=clock)
    try:
        conn.send(("ready", simulator.start(warm=warm)))
        while True:
            command, argument = conn.recv()
            if command == "stop":
                break
            if command == "clock":
                clock.set(argument)
                conn.send(("ok", None))
            elif command == "topups":
                conn.send(("ok", simulator.topups(argument)))
            else:
                conn.send(("error", f"unknown command {command!r}"))
    except EOFError:
        pass  # the parent went away: stop serving
    finally:
        simulator.stop()
        conn.close()


class SimulatorProcess:
    """A simulator of ``DEFAULT_WORLD`` with a fixed, settable clock, served by a child process.

    Same seed and clock give the same world as an in-process ``ProviderSimulator`` (same anchor
    day, same rows and natural keys). Only the clock can be steered and top-ups read; faults and
    revisions need the in-process simulator.
    """

    def __init__(self, *, seed: int, now: datetime, warm: bool = True) -> None:
        self.seed = seed
        self.now = now
        self.warm = warm
        self.base_url = ""
        self._conn: Connection | None = None
        self._process: multiprocessing.process.BaseProcess | None = None

    def start(self) -> str:
        """Start the child and return the simulator's base URL once it is serving."""
        self.start_async()
        return self.wait_ready()

    def start_async(self) -> None:
        """Start the child without waiting for it (it warms up while the caller does other work)."""
        self._conn, self._process = spawn_child(_serve, self.seed, self.now, self.warm)

    def wait_ready(self) -> str:
        """Block until the child serves and return its base URL."""
        if self._conn is None:
            raise RuntimeError("the simulator process was not started")
        if not self.base_url:
            if not self._conn.poll(START_TIMEOUT):
                self.stop()
                raise RuntimeError("the simulator process did not start in time")
            try:
                _, self.base_url = self._conn.recv()
            except EOFError:
                self.stop()
                raise RuntimeError("the simulator process exited before serving") from None
        return self.base_url

    def account_url(self, slug: str) -> str:
        return f"{self.base_url}/{slug}"

    def set_clock(self, moment: datetime) -> None:
        """Move the child's clock; returns once requests see the new time."""
        self._call("clock", moment)

    def topups(self, slug: str) -> list[SimTopUp]:
        """The account's top-ups up to the child's clock (see ``ProviderSimulator.topups``)."""
        result: list[SimTopUp] = self._call("topups", slug)
        return result

    def _call(self, command: str, argument: Any) -> Any:
        if self._conn is None:
            raise RuntimeError("the simulator process is not running")
        self._conn.send((command, argument))
        status, detail = self._conn.recv()
        if status != "ok":
            raise RuntimeError(detail)
        return detail

    def stop(self) -> None:
        stop_child(self._conn, self._process, ("stop", None))
        self._conn, self._process = None, None

    def __enter__(self) -> SimulatorProcess:
        if not self.base_url:
            self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
