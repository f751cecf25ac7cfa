"""ApiFailure, argument parsing, message timestamps, trigger and response_url records."""

from __future__ import annotations

import copy
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from bot.sandbox.slack._models import JsonDict, SlackMessage

_THREAD_TS = re.compile(r"^\d{1,12}\.\d{1,6}$")
_MAX_ATTACHMENTS = 100
_MAX_VIEW_STACK = 3
# docs.slack.dev/interactivity/handling-user-interaction: a response_url works up to five times
# within thirty minutes.
RESPONSE_URL_MAX_USES = 5
RESPONSE_URL_TTL_SECONDS = 30 * 60


class ApiFailure(Exception):
    """A Web API call Slack would refuse: answered ``{"ok": false, "error": ...}``."""

    def __init__(
        self,
        error: str,
        *,
        messages: list[str] | None = None,
        status: int = 200,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(error)
        self.error = error
        self.messages = messages or []
        self.status = status
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})

    def body(self) -> JsonDict:
        body: JsonDict = {"ok": False, "error": self.error, **self.extra}
        if self.messages:
            body["response_metadata"] = {"messages": list(self.messages)}
        return body


@dataclass
class _Trigger:
    user_id: str | None
    view_id: str | None
    expires_at: float
    used: bool = False


@dataclass
class _ResponseUrl:
    url: str
    channel_id: str | None
    user_id: str | None
    message_ts: str | None
    expires_at: float
    uses: int = 0


class _TsClock:
    """Unique, increasing message timestamps shaped like Slack's ("1732430000.000100")."""

    def __init__(self) -> None:
        self._last_us = 0

    def next(self) -> str:
        self._last_us = max(int(time.time() * 1_000_000), self._last_us + 1)
        return f"{self._last_us // 1_000_000}.{self._last_us % 1_000_000:06d}"


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in {"1", "true", "yes"}
    return bool(value)


def _str_arg(args: Mapping[str, Any], name: str) -> str | None:
    value = args.get(name)
    if value is None or value == "":
        return None
    return str(value)


def _int_arg(args: Mapping[str, Any], name: str, default: int) -> int:
    value = args.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except (TypeError, ValueError) as exc:
        raise ApiFailure("invalid_arguments", messages=[f"[ERROR] invalid `{name}`"]) from exc


def _missing(name: str) -> ApiFailure:
    return ApiFailure("invalid_arguments", messages=[f"[ERROR] missing required field: {name}"])


def _ts_window(args: Mapping[str, Any]) -> Callable[[SlackMessage], bool]:
    """conversations.history/replies: `oldest` and `latest`, exclusive unless `inclusive`."""
    try:
        oldest = float(_str_arg(args, "oldest") or 0)
        latest = float(_str_arg(args, "latest") or "inf")
    except ValueError as exc:
        raise ApiFailure("invalid_ts_oldest") from exc
    inclusive = _truthy(args.get("inclusive"))

    def in_window(message: SlackMessage) -> bool:
        ts = float(message.ts)
        if inclusive:
            return oldest <= ts <= latest
        return oldest < ts < latest

    return in_window


def _message_metadata(metadata: Any) -> JsonDict | None:
    """chat.postMessage `metadata`: an object with a string `event_type` and an object
    `event_payload` (docs.slack.dev, chat.postMessage: invalid_metadata_format,
    invalid_metadata_schema)."""
    if metadata is None or metadata == "":
        return None
    if not isinstance(metadata, dict):
        raise ApiFailure("invalid_metadata_format")
    event_type = metadata.get("event_type")
    payload = metadata.get("event_payload")
    if not isinstance(event_type, str) or not event_type or not isinstance(payload, dict):
        raise ApiFailure("invalid_metadata_schema")
    return copy.deepcopy(metadata)
