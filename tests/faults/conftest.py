"""Private PostgreSQL and Redis instances that fault tests may restart or shut down.

The shared services on 5432 and 6379 serve other test runs and must never be restarted, so each
fault test that breaks a service starts its own copy in a temporary directory on a free port. A
missing binary skips the test locally and fails it under CI=true (a missing service is a failure
there, never a skip).
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from django.db import connections, router

from config.settings import database_from_url

from ..usage.conftest import loopback, simulator  # noqa: F401  (the provider simulator and loopback fixtures)

ROOT = Path(__file__).resolve().parents[2]

# The alias this test process uses for the private PostgreSQL (the worker uses it as "default").
PRIVATE_ALIAS = "private_pg"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def missing(what: str) -> None:
    """Fail under CI (a missing service is a failure there), skip elsewhere."""
    if os.environ.get("CI"):
        pytest.fail(f"{what} is required in CI")
    pytest.skip(f"{what} is not installed")


def wait_for(condition: Any, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.1)


# --- PostgreSQL ------------------------------------------------------------------------------------


def postgres_bindir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


@dataclass
class PrivatePostgres:
    """A throw-away PostgreSQL cluster: ``url`` for the app, ``restart()`` for the fault."""

    bindir: Path
    base: Path
    port: int
    dbname: str = "quotaboard"

    @property
    def data(self) -> Path:
        return self.base / "data"

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{self.dbname}"

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        command = [str(self.bindir / args[0]), *args[1:]]
        if os.geteuid() == 0:  # PostgreSQL refuses to run as root
            command = ["runuser", "-u", "postgres", "--", *command]
        return subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)

    def pg_ctl(self, action: str, *extra: str) -> None:
        options = f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(
            "pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.base / "log"), "-w", action, *extra
        )

    def init(self) -> None:
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8")
        self.pg_ctl("start")
        with psycopg.connect(self.admin_dsn("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self.dbname}"')

    def admin_dsn(self, dbname: str | None = None) -> str:
        return f"host=127.0.0.1 port={self.port} user=postgres dbname={dbname or self.dbname}"

    def restart(self) -> None:
        """``pg_ctl restart -m fast``: every session is terminated, then the server comes back."""
        self.pg_ctl("restart", "-m", "fast")

    def stop(self) -> None:
        self.pg_ctl("stop", "-m", "fast")

    def start(self) -> None:
        self.pg_ctl("start")

    def destroy(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):  # already stopped
            self.pg_ctl("stop", "-m", "immediate")
        shutil.rmtree(self.base, ignore_errors=True)


class _PrivateRouter:
    """Send every ORM read and write of this test process to the private PostgreSQL."""

    def db_for_read(self, model: Any, **hints: Any) -> str:
        return PRIVATE_ALIAS

    def db_for_write(self, model: Any, **hints: Any) -> str:
        return PRIVATE_ALIAS

    def allow_relation(self, *args: Any, **hints: Any) -> bool:
        return True


@pytest.fixture(scope="module")
def private_postgres() -> Iterator[PrivatePostgres]:
    """A migrated private cluster (module scope: initdb + migrate once, ~10 s)."""
    if connections["default"].vendor != "postgresql":
        pytest.skip("PostgreSQL restart tests run in the PostgreSQL run (DATABASE_URL=postgres://...)")
    bindir = postgres_bindir()
    if bindir is None or not (bindir / "pg_ctl").exists():
        missing("PostgreSQL server binaries (initdb, pg_ctl)")
    assert bindir is not None
    base = Path(tempfile.mkdtemp(prefix="qb-fault-pg-"))
    if os.geteuid() == 0:
        shutil.chown(base, "postgres", "postgres")
    server = PrivatePostgres(bindir=bindir, base=base, port=free_port())
    try:
        server.init()
        env = {**os.environ, "DATABASE_URL": server.url, "DJANGO_SETTINGS_MODULE": "config.settings"}
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
            cwd=ROOT,
            env=env,
            check=True,
            timeout=300,
            capture_output=True,
        )
        yield server
    finally:
        server.destroy()


@pytest.fixture
def private_db(private_postgres: PrivatePostgres, django_db_blocker: Any) -> Iterator[PrivatePostgres]:
    """Route this test process's ORM to the private cluster, emptied first."""
    settings_dict = connections.configure_settings(
        {
            "default": connections["default"].settings_dict,
            PRIVATE_ALIAS: database_from_url(private_postgres.url),
        }
    )[PRIVATE_ALIAS]
    connections.settings[PRIVATE_ALIAS] = settings_dict
    saved_routers = router.routers
    router.routers = [_PrivateRouter()]
    with django_db_blocker.unblock():
        with psycopg.connect(private_postgres.admin_dsn(), autocommit=True) as conn:
            tables = [
                row[0]
                for row in conn.execute(
                    "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'django_migrations'"
                )
            ]
            conn.execute("TRUNCATE " + ", ".join(f'"{t}"' for t in tables) + " RESTART IDENTITY CASCADE")
        try:
            yield private_postgres
        finally:
            connections[PRIVATE_ALIAS].close()
            router.routers = saved_routers
            del connections.settings[PRIVATE_ALIAS]
            if hasattr(connections._connections, PRIVATE_ALIAS):  # type: ignore[attr-defined]
                delattr(connections._connections, PRIVATE_ALIAS)  # type: ignore[attr-defined]


# --- Redis -----------------------------------------------------------------------------------------


@dataclass
class PrivateRedis:
    """A throw-away redis-server; ``shutdown_nosave()`` loses whatever only lived in memory."""

    base: Path
    port: int
    appendonly: bool
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "yes" if self.appendonly else "no",
                "--appendfsync",
                "always",
                "--dir",
                str(self.base),
            ],
            stdout=open(self.base / "redis.log", "ab"),  # noqa: SIM115 (the child keeps its copy)
            stderr=subprocess.STDOUT,
        )
        wait_for(self.ping, "the private redis-server to answer PING", timeout=30)

    def cli(self, *args: str) -> str:
        result = subprocess.run(
            ["redis-cli", "-p", str(self.port), *args], capture_output=True, text=True, timeout=30
        )
        return result.stdout.strip()

    def ping(self) -> bool:
        return self.cli("ping") == "PONG"

    def shutdown_nosave(self) -> None:
        """``redis-cli shutdown nosave``: no RDB snapshot; with AOF on, the log still holds every write."""
        self.cli("shutdown", "nosave")
        assert self.process is not None
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)


@contextmanager
def private_redis_server(*, appendonly: bool) -> Iterator[PrivateRedis]:
    if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
        missing("redis-server and redis-cli")
    base = Path(tempfile.mkdtemp(prefix="qb-fault-redis-"))
    server = PrivateRedis(base=base, port=free_port(), appendonly=appendonly)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)
