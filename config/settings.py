"""Quotaboard settings: one module, driven by environment variables.

Safe development defaults (SQLite in ./var, an embedded file-system Celery broker); production
differs by environment only. See the configuration table in README.md.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("QB_VAR_DIR", BASE_DIR / "var"))
VAR_DIR.mkdir(parents=True, exist_ok=True)


def env_str(name: str, default: str = "") -> str:
    """Return the variable, or the contents of the file named by NAME_FILE (Docker secrets)."""
    file_path = os.environ.get(f"{name}_FILE")
    if file_path:
        return Path(file_path).read_text().strip()
    return os.environ.get(name, default)


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value else default


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in env_str(name, default).split(",") if item.strip()]


def database_from_url(url: str) -> dict[str, object]:
    """Return a DATABASES entry for a sqlite:///path or postgres://user:pass@host:port/name URL."""
    parts = urlsplit(url)
    if parts.scheme == "sqlite":
        name = unquote(parts.path[1:]) if parts.path.startswith("/") else unquote(parts.path)
        return {"ENGINE": "django.db.backends.sqlite3", "NAME": name or VAR_DIR / "quotaboard.sqlite3"}
    if parts.scheme in {"postgres", "postgresql", "pgsql"}:
        options = dict(parse_qsl(parts.query))
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": unquote(parts.path.lstrip("/")),
            "USER": unquote(parts.username or ""),
            "PASSWORD": unquote(parts.password or ""),
            "HOST": parts.hostname or "",
            "PORT": str(parts.port or ""),
            "OPTIONS": options,
            # Survive a database restart without a "connection already closed" loop.
            "CONN_HEALTH_CHECKS": True,
            "CONN_MAX_AGE": env_int("DB_CONN_MAX_AGE", 60),
        }
    raise ValueError(f"Unsupported DATABASE_URL scheme: {parts.scheme!r}")


DEBUG = env_bool("DEBUG", default=False)
SECRET_KEY = env_str("SECRET_KEY", "dev-only-insecure-secret-key-change-me-in-production-0123456789")
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")
SITE_URL = env_str("SITE_URL", "http://127.0.0.1:8000")

# Provider credentials are encrypted with Fernet. The first key encrypts, every key decrypts, so
# keys rotate by prepending a new one and running `manage.py rotate_encryption_key`.
# Without the variable a key is derived from SECRET_KEY (fine for the demo, not for production).
ENCRYPTION_KEYS = env_list("QB_ENCRYPTION_KEYS")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "django_htmx",
    "template_partials.apps.SimpleAppConfig",
    # Only for the API docs page's bundled Swagger UI static files (no CDN).
    "ninja",
    "projects",
    "usage",
    "billing",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "projects.middleware.SecurityHeadersMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.middleware.gzip.GZipMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "projects.context_processors.navigation",
            ],
            # Compiled templates are cached (the partials loader wraps exactly one cached loader): without
            # it every request re-parsed its template, a sixth of the month review's server time.
            # runserver's autoreloader still resets the cache when a template changes.
            "loaders": [
                (
                    "template_partials.loader.Loader",
                    [
                        (
                            "django.template.loaders.cached.Loader",
                            [
                                "django.template.loaders.filesystem.Loader",
                                "django.template.loaders.app_directories.Loader",
                            ],
                        )
                    ],
                )
            ],
            "builtins": ["template_partials.templatetags.partials"],
        },
    }
]

DATABASES = {
    "default": database_from_url(env_str("DATABASE_URL", f"sqlite:///{VAR_DIR / 'quotaboard.sqlite3'}"))
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the web server read while the Celery worker writes; the timeout rides out short write locks.
    # A 64 MB page cache (default 2 MB) keeps the usage indexes in memory: ingest writes ~40 % faster.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA cache_size=-65536;",
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
# Failed sign-ins are throttled per username and per client address (projects.views.login_view).
LOGIN_FAILURE_LIMIT_PER_USER = env_int("QB_LOGIN_FAILURES_PER_USER", 10)
LOGIN_FAILURE_LIMIT_PER_IP = env_int("QB_LOGIN_FAILURES_PER_IP", 30)
LOGIN_FAILURE_WINDOW_SECONDS = env_int("QB_LOGIN_FAILURE_WINDOW", 900)
# Counters live in the cache: per process by default; set REDIS_CACHE_URL so every web process shares them.
CACHES = (
    {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": env_str("REDIS_CACHE_URL"),
        }
    }
    if env_str("REDIS_CACHE_URL")
    else {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
)
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
USE_THOUSAND_SEPARATOR = False

STATIC_URL = "/static/"
STATIC_ROOT = VAR_DIR / "staticfiles"
STATIC_ROOT.mkdir(exist_ok=True)
STATICFILES_DIRS = [BASE_DIR / "static"]
STATICFILES_FINDERS = [
    "django.contrib.staticfiles.finders.FileSystemFinder",
    "django.contrib.staticfiles.finders.AppDirectoriesFinder",
    # Serves plotly.min.js straight from the installed plotly package, so chart code and plotly.js match.
    "usage.static_finders.PlotlyJsFinder",
]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if env_bool("QB_COLLECTSTATIC", default=not DEBUG)
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
WHITENOISE_USE_FINDERS = True
WHITENOISE_MAX_AGE = 3600

EMAIL_BACKEND = env_str("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "Quotaboard <quotaboard@localhost>")

# Security: sensible in production, relaxed automatically for the plain-HTTP demo.
SECURE_HTTPS = env_bool("QB_HTTPS", default=False)
SESSION_COOKIE_SECURE = SECURE_HTTPS
CSRF_COOKIE_SECURE = SECURE_HTTPS
SESSION_COOKIE_HTTPONLY = True
# Over HTTPS the __Host- prefix pins cookies to this exact host (Secure, Path=/, no Domain).
# The CSRF token reaches htmx from the template (hx-headers), so no script reads the cookie.
SESSION_COOKIE_NAME = "__Host-sessionid" if SECURE_HTTPS else "sessionid"
CSRF_COOKIE_NAME = "__Host-csrftoken" if SECURE_HTTPS else "csrftoken"
CSRF_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
SECURE_SSL_REDIRECT = SECURE_HTTPS and env_bool("QB_SSL_REDIRECT", default=True)
SECURE_HSTS_SECONDS = 31536000 if SECURE_HTTPS else 0
SECURE_HSTS_INCLUDE_SUBDOMAINS = SECURE_HTTPS
SECURE_HSTS_PRELOAD = SECURE_HTTPS
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if env_bool("QB_BEHIND_PROXY") else None
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"

# Celery. The default broker is kombu's file-system transport: web, worker and beat are separate
# processes that share ./var/broker, so the demo needs no Redis. Production sets CELERY_BROKER_URL.
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", "filesystem://")
BROKER_DIR = VAR_DIR / "broker"
if CELERY_BROKER_URL.startswith("filesystem"):
    for _folder in ("queue", "processed", "control"):
        (BROKER_DIR / _folder).mkdir(parents=True, exist_ok=True)
CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, object] = (
    {
        "data_folder_in": str(BROKER_DIR / "queue"),
        "data_folder_out": str(BROKER_DIR / "queue"),
        "processed_folder": str(BROKER_DIR / "processed"),
        "control_folder": str(BROKER_DIR / "control"),
        "store_processed": False,
    }
    if CELERY_BROKER_URL.startswith("filesystem")
    else {
        # Must exceed the longest task time limit and retry countdown, or Redis redelivers a running task.
        "visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT", 3600),
    }
)
CELERY_TASK_TIME_LIMIT = 900
CELERY_TASK_SOFT_TIME_LIMIT = 840
CELERY_USAGE_INTERVAL_MINUTES = env_int("QB_USAGE_INTERVAL_MINUTES", 5)
CELERY_BALANCE_INTERVAL_MINUTES = env_int("QB_BALANCE_INTERVAL_MINUTES", 15)
# Circuit breaker per account stream: after this many transient failures in a row (429/5xx/timeouts,
# Celery's own retries included) the schedule backs off, doubling the interval per further failure
# up to the cap, and Celery stops retrying; a success closes it. "Run now" always runs.
INGEST_BREAKER_FAILURES = env_int("QB_BREAKER_FAILURES", 5)
INGEST_BREAKER_MAX_MINUTES = env_int("QB_BREAKER_MAX_MINUTES", 360)

# Outbound calls to provider APIs: a hard per-call timeout, and loopback/private targets refused
# unless the operator allows them (the demo and tests talk to the simulator on 127.0.0.1).
PROVIDER_HTTP_TIMEOUT_SECONDS = float(env_str("QB_PROVIDER_TIMEOUT", "10"))
PROVIDER_ALLOW_PRIVATE_HOSTS = env_bool("QB_ALLOW_PRIVATE_PROVIDER_HOSTS", default=True)

# Push API (/api/v1/). A 5,000-record batch is ~2-3 MB of JSON; the body limit leaves headroom and
# Django answers anything larger with RequestDataTooBig, which the API maps to 413.
# File uploads (imports) stream to disk and do not count towards this limit.
QB_API_MAX_BATCH = env_int("QB_API_MAX_BATCH", 5000)
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("QB_API_MAX_BODY_BYTES", 8 * 1024 * 1024)
# Per ingest token, fixed one-minute window counted in the database (shared by every web process).
QB_API_RATE_LIMIT_PER_MINUTE = env_int("QB_API_RATE_LIMIT_PER_MINUTE", 600)
# An Idempotency-Key left "in flight" this long (a crashed request) may be taken over by a retry.
QB_IDEMPOTENCY_STALE_SECONDS = env_int("QB_IDEMPOTENCY_STALE_SECONDS", 120)
# File imports: uploads are saved under VAR_DIR/imports/ and streamed in batches.
QB_IMPORT_DIR = VAR_DIR / "imports"
QB_IMPORT_MAX_UPLOAD_BYTES = env_int("QB_IMPORT_MAX_UPLOAD_BYTES", 2 * 1024**3)
# Month review: a balance reconciliation difference is flagged when it exceeds both this amount (in
# the account's currency) and this percentage of the month's spend. Strings: parsed as Decimal.
QB_RECONCILE_TOLERANCE_AMOUNT = env_str("QB_RECONCILE_TOLERANCE_AMOUNT", "0.01")
QB_RECONCILE_TOLERANCE_PERCENT = env_str("QB_RECONCILE_TOLERANCE_PERCENT", "0.5")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {"httpx": {"level": "WARNING"}, "httpcore": {"level": "WARNING"}},
}
