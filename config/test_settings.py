"""Test overrides: the same settings, with fast hashing, in-memory email and a file SQLite test database."""

from __future__ import annotations

import decimal
import os

from .settings import *  # noqa: F403
from .settings import DATABASES, VAR_DIR

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # A file, not :memory:, so a real Celery worker process in the tests can open the same database.
    # Per process, so two test runs on one machine never share a file.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / f"test_quotaboard_{os.getpid()}.sqlite3")}

# Money must never pass through float: mixing a float into Decimal arithmetic raises in every test.
decimal.getcontext().traps[decimal.FloatOperation] = True
