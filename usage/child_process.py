"""Start and stop a helper process that takes commands over a pipe (the seeding simulator and readers)."""

from __future__ import annotations

import contextlib
import multiprocessing
from collections.abc import Callable
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any


def spawn_child(target: Callable[..., None], *args: Any) -> tuple[Connection, BaseProcess]:
    """Start ``target(child_end, *args)`` in a new process; return this end of the pipe and the process."""
    # spawn, not fork: the parent holds database connections and threads a fork would copy.
    context = multiprocessing.get_context("spawn")
    parent_end, child_end = context.Pipe()
    process = context.Process(target=target, args=(child_end, *args), daemon=True)
    process.start()
    child_end.close()
    return parent_end, process


def stop_child(conn: Connection | None, process: BaseProcess | None, stop_message: Any) -> None:
    """Ask the child to stop, then wait for it (terminating it after 10 s)."""
    if conn is not None:
        with contextlib.suppress(BrokenPipeError, OSError):  # the child already exited
            conn.send(stop_message)
        conn.close()
    if process is not None:
        process.join(timeout=10)
        if process.is_alive():
            process.terminate()
            process.join(timeout=5)
