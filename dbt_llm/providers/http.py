"""What every HTTP provider shares: reading `retry-after`, saying why a connection failed, and
keeping secrets (the key, header values) out of every message."""

from __future__ import annotations

import email.utils
import socket
import ssl
import time
from collections.abc import Iterable
from datetime import timezone

import httpx

from .base import TransientError


def parse_retry_after(headers: httpx.Headers) -> float | None:
    """`retry-after-ms` (OpenAI), else `retry-after` in seconds or as an HTTP date."""
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (ValueError, TypeError, IndexError):
        return None  # unreadable: the engine's own backoff applies, the row is not failed for it
    if parsed.tzinfo is None:  # an HTTP date is GMT
        parsed = parsed.replace(tzinfo=timezone.utc)
    return max(0.0, float(parsed.timestamp()) - time.time())


def shown_url(url: str) -> str:
    """A URL fit for messages: without user:password@, which may hold a secret."""
    parsed = httpx.URL(url)
    return str(parsed.copy_with(userinfo=b"")) if parsed.userinfo else url


def not_connected(exc: BaseException) -> str:
    """Why a connection failed, in words: httpx often says only "All connection attempts failed"
    and keeps the OS's reason down its chain of causes."""
    chain: list[BaseException] = []
    cause: BaseException | None = exc
    while cause is not None and cause not in chain:
        chain.append(cause)
        cause = cause.__cause__ or cause.__context__
    for error in reversed(chain):
        if isinstance(error, ConnectionRefusedError):
            return f"connection refused: {error.strerror or error}"
        if isinstance(error, socket.gaierror):
            return f"DNS lookup failed: {error}"
        if isinstance(error, ssl.SSLError):
            return f"TLS error: {error}"
    return f"{type(exc).__name__}: {exc}"


def redact(text: str, *secrets: str | Iterable[str]) -> str:
    """Some servers quote the key (or a gateway header) they were sent in their error: it must not
    reach our messages. Values shorter than 8 characters are no secret and are left alone."""
    for secret in secrets:
        for value in [secret] if isinstance(secret, str) else secret:
            if len(value) >= 8:
                text = text.replace(value, "[redacted]")
    return text


def error_message(response: httpx.Response, *secrets: str | Iterable[str]) -> str:
    """The provider's own words, with the secrets it was sent (key, header values) taken out."""
    try:
        body = response.json()
        if isinstance(body, dict) and isinstance(body.get("error"), dict):
            return redact(str(body["error"].get("message") or body["error"]), *secrets)
    except ValueError:
        pass
    text = redact(response.text, *secrets).strip().replace("\n", " ")
    return text[:200] or response.reason_phrase


def not_a(response: httpx.Response, what: str, *secrets: str | Iterable[str]) -> TransientError:
    text = redact(response.text, *secrets)[:200]
    return TransientError("bad_response", f"HTTP {response.status_code} with a body that is not a {what}: {text!r}")
