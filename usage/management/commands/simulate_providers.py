from __future__ import annotations

import signal
import threading
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from usage.simulator import DEFAULT_WORLD, ProviderSimulator


class Command(BaseCommand):
    help = "Serve the simulated provider accounts (New API, One API, OpenAI, ...) on loopback until Ctrl-C."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8765)
        parser.add_argument("--seed", type=int, default=7)
        parser.add_argument(
            "--no-warm",
            action="store_true",
            help="Serve at once instead of generating every account's history first.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        simulator = ProviderSimulator(DEFAULT_WORLD, seed=options["seed"])
        base = simulator.start(host=options["host"], port=options["port"], warm=not options["no_warm"])
        self.stdout.write(f"Provider simulator on {base} (seed {options['seed']}, anchor {simulator.anchor})")
        for account in DEFAULT_WORLD.accounts:
            self.stdout.write(f"  {account.kind:<10} {simulator.account_url(account.slug)}")
        # Handlers of our own for Ctrl-C and SIGTERM: a process started in the background by a
        # non-interactive shell inherits SIGINT as ignored, and Python then never raises
        # KeyboardInterrupt, so Ctrl-C semantics must not depend on how we were started.
        stop = threading.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: stop.set())
        try:
            stop.wait()
            self.stdout.write("Stopping.")
        finally:
            simulator.stop()
