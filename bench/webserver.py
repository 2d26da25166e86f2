"""The real web process the load scripts talk to: `runserver --noreload` (threaded) on a free loopback port."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def web_server(env: dict[str, str], log_path: Path) -> Iterator[str]:
    """Serve the app in a child process and yield its base URL once /login/ answers (≤ 30 s).

    The server's stderr goes to ``log_path``; it is terminated when the block ends.
    """
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with open(log_path, "w") as log:
        server = subprocess.Popen(
            [sys.executable, "manage.py", "runserver", "--noreload", f"127.0.0.1:{port}"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        try:
            for _ in range(300):
                try:
                    httpx.get(f"{base}/login/", timeout=2)
                    break
                except httpx.HTTPError:
                    time.sleep(0.1)
            yield base
        finally:
            server.terminate()
            server.wait(timeout=30)
