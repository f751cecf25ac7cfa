"""The doctor's Check record, the names of its checks, and the text helpers they share."""

from __future__ import annotations

from dataclasses import dataclass

SETTINGS = "settings"
SLACK_AUTH = "Slack token"
SLACK_SCOPES = "Slack scopes"
SLACK_INBOX = "Slack inbox channel"
HIGHLEVEL_AUTH = "HighLevel token"
WEBHOOK_KEY = "webhook key"
DATABASE = "database"
INBOUND = "inbound"
RETENTION = "message retention"
SOCKET_MODE = "Socket Mode"
RUNNING_BRIDGE = "running bridge"

NETWORK_TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True)
class Check:
    """One finding: `fix` says in one line what to do when `ok` is False."""

    name: str
    ok: bool
    detail: str
    fix: str | None = None


def describe_age(when: float, now: float) -> str:
    """'12 s ago', '3 min ago', '5 h ago', '2 days ago' (and 'just now' within a second)."""
    seconds = max(0.0, now - when)
    if seconds < 1:
        return "just now"
    if seconds < 60:
        return f"{int(seconds)} s ago"
    if seconds < 3600:
        return f"{int(seconds // 60)} min ago"
    if seconds < 2 * 86_400:
        return f"{int(seconds // 3600)} h ago"
    return f"{int(seconds // 86_400)} days ago"


def _one_line(value: object) -> str:
    text = " ".join(str(value).split())
    return text or type(value).__name__
