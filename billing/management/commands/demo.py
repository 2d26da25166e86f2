"""`make demo`: migrate, seed once, then run web + Celery worker + beat + provider simulator together."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser

from projects.models import Organization

DEMO_ORG_SLUG = "acme-ai"


class Command(BaseCommand):
    help = "Run the whole demo: web server, Celery worker and beat on the embedded broker, and the provider simulator."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--port", type=int, default=int(os.environ.get("QB_DEMO_PORT", "8000")))
        parser.add_argument(
            "--simulator-port", type=int, default=int(os.environ.get("QB_SIMULATOR_PORT", "8765"))
        )
        parser.add_argument("--password", default="quotaboard-demo")

    def handle(self, *args: Any, **options: Any) -> None:
        port, sim_port, password = options["port"], options["simulator_port"], options["password"]
        simulator_url = f"http://127.0.0.1:{sim_port}"
        self.stdout.write("Migrating the embedded database…")
        call_command("migrate", verbosity=0)
        call_command("collectstatic", interactive=False, verbosity=0)
        if not Organization.objects.filter(slug=DEMO_ORG_SLUG).exists():
            self.stdout.write("Seeding the demo organization (first run only, under a minute)…")
            call_command("seed_demo", simulator_url=simulator_url, password=password)

        python = sys.executable
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        commands = {
            "simulator": [python, "manage.py", "simulate_providers", "--port", str(sim_port)],
            "web": [python, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload", "--skip-checks"],
            "worker": [
                python,
                "-m",
                "celery",
                "-A",
                "config",
                "worker",
                "-c",
                "1",
                "-l",
                "warning",
                "--without-gossip",
                "--without-mingle",
            ],
            "beat": [
                python,
                "-m",
                "celery",
                "-A",
                "config",
                "beat",
                "-l",
                "warning",
                "-s",
                str(settings.VAR_DIR / "celerybeat-schedule"),
            ],
        }
        children: dict[str, subprocess.Popen[bytes]] = {}

        def stop(signum: int, frame: object) -> None:
            raise KeyboardInterrupt

        # SIGTERM (kill, a process manager) stops everything the same way as Ctrl-C.
        signal.signal(signal.SIGTERM, stop)
        try:
            for name, command in commands.items():
                children[name] = subprocess.Popen(command, cwd=settings.BASE_DIR, env=env)
            time.sleep(2)
            url = f"http://127.0.0.1:{port}/"
            self.stdout.write(self.style.SUCCESS(f"\nQuotaboard is running at {url}"))
            self.stdout.write(
                f"  Sign in as  admin / {password}   (also finance, owner, viewer with the same password)"
            )
            self.stdout.write(
                f"  Provider simulator on {simulator_url}; Celery worker + beat ingest from it."
            )
            self.stdout.write("  Press Ctrl-C to stop everything.\n")
            while True:
                for name, child in children.items():
                    if child.poll() is not None:
                        self.stderr.write(f"{name} exited with status {child.returncode}; stopping the demo.")
                        return
                time.sleep(1)
        except KeyboardInterrupt:
            self.stdout.write("\nStopping…")
        finally:
            for child in children.values():
                if child.poll() is None:
                    child.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + 15
            for child in children.values():
                try:
                    child.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    child.kill()
