"""The one HTTP client every connector uses: timeouts, bounded retries, redaction, no cross-host redirects.

Errors raised here never carry the credential: every message goes through ``redact`` with the
account's secret before it becomes an exception, a log line or ``IngestRun.error``.
"""

from __future__ import annotations

import email.utils
import ipaddress
import logging
import random
import re
import socket
import time
import zlib
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
from django.conf import settings

from projects.money import MoneyError, loads_exact

logger = logging.getLogger("usage.providers")

MAX_TRIES = 4
BACKOFF_BASE_SECONDS = 1.0
BACKOFF_CAP_SECONDS = 60.0
# A provider page is at most a few hundred KB; a multi-MB body is not a page we asked for.
MAX_BODY_BYTES = 4 * 1024 * 1024
RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504, 529})
AUTH_STATUSES = frozenset({401, 403})

# Module-level so tests can swap the pause for a recorder (the client binds it at construction).
SLEEP: Callable[[float], None] = time.sleep

_TOKENISH = re.compile(r"(?i)(bearer\s+)?\b(sk-[a-z0-9_\-]{6,}|sk_[a-z0-9_\-]{6,}|[a-f0-9]{32,})\b")


def redact(text: str, *secrets: str, limit: int = 500) -> str:
    """Return text with each secret and anything shaped like an API key replaced, cut to ``limit`` chars."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "[redacted]")
    text = _TOKENISH.sub("[redacted]", text)
    return text[:limit]


class ProviderError(Exception):
    """A provider call failed; the message is already redacted and safe to show and store."""

    retryable = False

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class TransientProviderError(ProviderError):
    """429, 5xx, timeouts, cut-off or malformed bodies: worth another try later."""

    retryable = True


class AuthError(ProviderError):
    """The credential was refused (401/403 or the gateways' HTTP 200 ``success:false`` for a bad token)."""


class ResponseError(ProviderError):
    """The provider answered, but not with something we can use (``success:false``, unknown shape)."""


def retry_after_seconds(value: str | None, *, now: datetime | None = None) -> float | None:
    """Return the wait a Retry-After header asks for (seconds or an HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return int(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def backoff_seconds(attempt: int, retry_after: float | None) -> float:
    """Return the pause before try ``attempt + 1``: exponential with full jitter, at least Retry-After, capped."""
    exponential = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * (2**attempt))
    wait = random.uniform(exponential / 2, exponential)
    if retry_after is not None:
        wait = max(wait, retry_after)
    return min(wait, BACKOFF_CAP_SECONDS)


def _host_is_private(host: str) -> bool:
    try:
        infos = socket.getaddrinfo(host, None)
    except socket.gaierror:
        return False
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if address.is_private or address.is_loopback or address.is_link_local or address.is_reserved:
            return True
    return False


class ProviderHTTP:
    """A small wrapper over ``httpx.Client`` bound to one account's base URL and secret.

    Caveat: retries sleep in the calling thread (bounded by MAX_TRIES and BACKOFF_CAP_SECONDS);
    tests pass ``sleep`` to record the waits instead of sleeping.
    """

    def __init__(
        self,
        base_url: str,
        *,
        secret: str,
        headers: Mapping[str, str] | None = None,
        max_tries: int = MAX_TRIES,
        sleep: Callable[[float], None] | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.secret = secret
        self.max_tries = max_tries
        self.sleep = sleep or SLEEP
        self.calls = 0
        host = urlsplit(self.base_url).hostname or ""
        if not settings.PROVIDER_ALLOW_PRIVATE_HOSTS and _host_is_private(host):
            raise ProviderError(f"refusing private or loopback provider host {host!r}")
        self._client = httpx.Client(
            # gzip or nothing: _read_capped inflates the body itself (see there).
            headers={"Accept-Encoding": "gzip", **dict(headers or {})},
            timeout=httpx.Timeout(settings.PROVIDER_HTTP_TIMEOUT_SECONDS),
            # Never follow a redirect: it could carry the Authorization header to another host.
            follow_redirects=False,
            transport=transport,
        )

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> ProviderHTTP:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _clean(self, text: str) -> str:
        return redact(text, self.secret)

    def get_json(self, path: str, params: Any = None) -> Any:
        """GET base_url + path and return the JSON body parsed exactly (Decimal numbers).

        Retries 429/5xx/timeouts/cut-off bodies up to ``max_tries`` with backoff honouring
        Retry-After; raises AuthError on 401/403 at once, ResponseError on other 4xx.
        """
        url = self.base_url + path
        last: ProviderError | None = None
        for attempt in range(self.max_tries):
            retry_after: float | None = None
            try:
                return self._get_once(url, params)
            except _Retry as exc:
                last = exc.error
                retry_after = exc.retry_after
            if attempt + 1 < self.max_tries:
                wait = backoff_seconds(attempt, retry_after)
                logger.info("provider call failed (%s); retrying in %.1fs", last, wait)
                self.sleep(wait)
        assert last is not None
        raise last

    def _get_once(self, url: str, params: Any) -> Any:
        self.calls += 1
        # httpx's read timeout restarts with every chunk: a body trickling in a byte at a time would
        # hold the worker indefinitely. The whole answer must arrive within the timeout.
        deadline = time.monotonic() + settings.PROVIDER_HTTP_TIMEOUT_SECONDS
        try:
            with self._client.stream("GET", url, params=params) as response:
                body = self._read_capped(response, deadline)
        except httpx.TimeoutException as exc:
            raise _Retry(TransientProviderError(f"timeout: {type(exc).__name__}")) from None
        except httpx.TransportError as exc:
            raise _Retry(TransientProviderError(f"connection failed: {type(exc).__name__}")) from None
        status = response.status_code
        if status in AUTH_STATUSES:
            raise AuthError(f"HTTP {status}: {self._clean(_error_message(body))}", status=status)
        if status in RETRY_STATUSES:
            raise _Retry(
                TransientProviderError(f"HTTP {status}: {self._clean(_error_message(body))}", status=status),
                retry_after_seconds(response.headers.get("retry-after")),
            )
        if 300 <= status < 400:
            raise ResponseError(f"HTTP {status}: redirect refused", status=status)
        if status >= 400:
            raise ResponseError(f"HTTP {status}: {self._clean(_error_message(body))}", status=status)
        try:
            return loads_exact(body)
        except (ValueError, MoneyError) as exc:
            # A cut-off body is usually a dropped connection: try again.
            raise _Retry(
                TransientProviderError(f"malformed JSON from provider: {self._clean(str(exc))[:120]}")
            ) from None

    def _read_capped(self, response: httpx.Response, deadline: float) -> bytes:
        """Return the decoded body; refuse one over MAX_BODY_BYTES decoded, or still arriving at ``deadline``.

        Reads the raw bytes and inflates them here: httpx's decoded stream can hold a trickle of
        gzip bytes back for many seconds before yielding anything, so the deadline would not be seen.
        """
        encoding = response.headers.get("content-encoding", "identity").strip().lower()
        if encoding not in ("identity", "gzip"):
            raise ResponseError(f"unsupported content encoding {encoding[:20]!r}")
        inflate = zlib.decompressobj(16 + zlib.MAX_WBITS) if encoding == "gzip" else None
        chunks: list[bytes] = []
        size = 0
        for raw in response.iter_raw():
            if time.monotonic() > deadline:
                raise _Retry(
                    TransientProviderError(
                        f"timeout: the answer took longer than {settings.PROVIDER_HTTP_TIMEOUT_SECONDS:g} s"
                    )
                )
            try:
                # At most one byte over the cap is inflated, so a small gzip bomb stays small.
                chunk = inflate.decompress(raw, MAX_BODY_BYTES + 1 - size) if inflate else raw
            except zlib.error:
                raise _Retry(TransientProviderError("malformed gzip body from provider")) from None
            size += len(chunk)
            if size > MAX_BODY_BYTES or (inflate is not None and inflate.unconsumed_tail):
                raise ResponseError(f"response larger than {MAX_BODY_BYTES} bytes refused")
            chunks.append(chunk)
        return b"".join(chunks)


class _Retry(Exception):
    def __init__(self, error: ProviderError, retry_after: float | None = None) -> None:
        super().__init__(str(error))
        self.error = error
        self.retry_after = retry_after


def _error_message(body: bytes) -> str:
    """Return the provider's error message from a JSON error body, or a short description of the body."""
    try:
        data = loads_exact(body)
    except (ValueError, MoneyError):
        text = body[:200].decode("utf-8", "replace").strip()
        return "non-JSON body" if text.startswith("<") else text[:120] or "empty body"
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        if isinstance(error, str):
            return error
        if data.get("message"):
            return str(data["message"])
    return "error"
