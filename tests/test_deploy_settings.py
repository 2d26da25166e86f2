"""A3: production settings pass `check --deploy` and set the cookie, HSTS and TLS flags.

Runs a fresh interpreter with the production environment (the test process keeps test settings).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parents[1]
PROBE = """
import json, django
from io import StringIO
django.setup()
from django.conf import settings
from django.core.management import call_command
out = StringIO()
call_command("check", deploy=True, fail_level="WARNING", stdout=out, stderr=out)
print(json.dumps({
    "check": out.getvalue().strip(),
    "session": [settings.SESSION_COOKIE_NAME, settings.SESSION_COOKIE_SECURE, settings.SESSION_COOKIE_HTTPONLY,
                settings.SESSION_COOKIE_SAMESITE],
    "csrf": [settings.CSRF_COOKIE_NAME, settings.CSRF_COOKIE_SECURE, settings.CSRF_COOKIE_HTTPONLY],
    "hsts": [settings.SECURE_HSTS_SECONDS, settings.SECURE_HSTS_INCLUDE_SUBDOMAINS],
    "ssl_redirect": settings.SECURE_SSL_REDIRECT,
    "debug": settings.DEBUG,
}))
"""


def test_production_settings_pass_the_deploy_check_with_hardened_cookies() -> None:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "QB_", "DEBUG"))},
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "SECRET_KEY": "test-" + Fernet.generate_key().decode() + "-production-grade-secret-key-0123456789",
        "QB_HTTPS": "1",
        "ALLOWED_HOSTS": "quotaboard.example.com",
        "QB_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
    }
    done = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    probe = json.loads(done.stdout.strip().splitlines()[-1])
    assert probe["check"] == "System check identified no issues (0 silenced)."
    assert probe["session"] == ["__Host-sessionid", True, True, "Lax"]
    assert probe["csrf"] == ["__Host-csrftoken", True, True]
    assert probe["hsts"][0] >= 31536000 and probe["hsts"][1] is True
    assert probe["ssl_redirect"] is True and probe["debug"] is False
