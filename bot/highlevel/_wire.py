"""Reading HighLevel's answers: ids in paths, wrapped bodies, error messages, Retry-After."""

from __future__ import annotations

import email.utils
import enum
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import httpx

from ._errors import HighLevelError


class _Kind(enum.Enum):
    READ = "read"
    """Safe to repeat: retried on 429, 5xx, connection errors and timeouts."""
    WRITE = "write"
    """May act on HighLevel: retried only when HighLevel certainly did not act on it."""


def _seg(value: str) -> str:
    """Quote an id for use as one path segment (no '/' or '..' smuggling)."""
    if not value:
        raise ValueError("id must not be empty")
    return quote(value, safe="")


def _unwrap(body: Any, key: str) -> Any:
    """Return ``body[key]`` when HighLevel wrapped the object in it, else ``body`` itself."""
    if isinstance(body, dict) and isinstance(body.get(key), dict):
        return body[key]
    return body


def _unexpected(what: str, detail: str, *, kind: _Kind) -> HighLevelError:
    # The request reached HighLevel and got a 2xx, so a write has probably been carried out.
    return HighLevelError(
        f"unexpected response from HighLevel ({what}): {detail}",
        may_have_acted=kind is _Kind.WRITE,
    )


def _decode_json(response: httpx.Response, path: str, kind: _Kind) -> Any:
    try:
        return response.json()
    except ValueError as exc:
        raise HighLevelError(
            f"unexpected response from HighLevel ({path}): body is not JSON",
            status_code=response.status_code,
            may_have_acted=kind is _Kind.WRITE,
        ) from exc


def _try_json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _error_message(body: Any, response: httpx.Response) -> str:
    if isinstance(body, dict):
        message = body.get("message")
        if isinstance(message, list):
            return "; ".join(str(item) for item in message)
        if isinstance(message, str) and message:
            return message
        if isinstance(body.get("error"), str):
            return str(body["error"])
    return f"HighLevel answered HTTP {response.status_code} {response.reason_phrase}".rstrip()


def _trace_id(body: Any) -> str | None:
    if isinstance(body, dict) and isinstance(body.get("traceId"), str):
        return str(body["traceId"])
    return None


def _retry_after(headers: httpx.Headers) -> float | None:
    """``Retry-After`` in seconds (number or HTTP date), or None."""
    value = headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())
