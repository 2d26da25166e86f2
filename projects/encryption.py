"""Encryption at rest for provider credentials (Fernet, with key rotation via MultiFernet)."""

from __future__ import annotations

import base64
import hashlib
from functools import cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


@cache
def _fernet() -> MultiFernet:
    keys: list[str] = list(settings.ENCRYPTION_KEYS)
    if not keys:
        # Demo fallback: a key derived from SECRET_KEY. Production sets QB_ENCRYPTION_KEYS.
        digest = hashlib.sha256(f"quotaboard-credentials:{settings.SECRET_KEY}".encode()).digest()
        keys = [base64.urlsafe_b64encode(digest).decode()]
    try:
        return MultiFernet([Fernet(key.encode()) for key in keys])
    except ValueError as exc:
        raise ImproperlyConfigured("QB_ENCRYPTION_KEYS must hold url-safe base64 Fernet keys") from exc


def reset_key_cache() -> None:
    _fernet.cache_clear()


def encrypt(plaintext: str) -> str:
    return _fernet().encrypt(plaintext.encode()).decode()


def decrypt(token: str) -> str:
    """Return the plaintext; a token no configured key opens raises ImproperlyConfigured, never ''."""
    try:
        return _fernet().decrypt(token.encode()).decode()
    except InvalidToken as exc:
        raise ImproperlyConfigured("a stored credential cannot be decrypted with QB_ENCRYPTION_KEYS") from exc


def rotate(token: str) -> str:
    """Return the token re-encrypted with the first (newest) key; raises ImproperlyConfigured if no key opens it."""
    try:
        return _fernet().rotate(token.encode()).decode()
    except InvalidToken as exc:
        raise ImproperlyConfigured("a stored secret cannot be decrypted with QB_ENCRYPTION_KEYS") from exc


def redact(secret: str, keep: int = 4) -> str:
    """Return a hint such as 'sk-…abcd' that identifies a secret without revealing it."""
    if not secret:
        return ""
    prefix = secret[:3] if secret[:3] in {"sk-", "sk_"} else ""
    return f"{prefix}…{secret[-keep:]}" if len(secret) > keep + len(prefix) + 4 else "…"


def is_current(token: str) -> bool:
    """Return True if the first (newest) key alone opens the token, i.e. rotation has nothing to do."""
    try:
        _fernet()._fernets[0].decrypt(token.encode())
    except InvalidToken:
        return False
    return True
