"""The settings' cross-field rules as plain functions of the given values, and pydantic's errors
turned into one line per variable.

Plain functions, so that `describe_errors` can name a missing way to Slack or HighLevel even
when other variables are wrong too (pydantic skips the model's own checks then).
"""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import SecretStr, ValidationError

from bot.settings._hints import HINTS


def _given(values: Mapping[str, object], name: str) -> bool:
    value = values.get(name)
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    return value is not None and str(value).strip() != ""


def highlevel_access_problem(values: Mapping[str, object]) -> str | None:
    """What is missing to reach HighLevel, from field-named values (None or "" is unset).

    One sub-account by Private Integration Token, sub-accounts through OAuth, or both.
    """

    def given(name: str) -> bool:
        return _given(values, name)

    if given("ghl_client_id") or given("ghl_client_secret"):
        for name in ("ghl_client_id", "ghl_client_secret", "public_url", "token_encryption_key"):
            if not given(name):
                return f"{name.upper()} is not set (required with a Marketplace app)"
    if given("ghl_api_token") and not given("ghl_location_id"):
        return "GHL_LOCATION_ID is not set (required with GHL_API_TOKEN)"
    if given("ghl_location_id") and not given("ghl_api_token"):
        return "GHL_API_TOKEN is not set (required with GHL_LOCATION_ID)"
    if not given("ghl_api_token") and not given("ghl_client_id"):
        return "GHL_API_TOKEN is not set"
    return None


def slack_access_problem(values: Mapping[str, object]) -> str | None:
    """What is missing to reach Slack: one workspace by SLACK_BOT_TOKEN, any number through
    Slack's install flow (SLACK_CLIENT_ID and SLACK_CLIENT_SECRET), or both."""

    def given(name: str) -> bool:
        return _given(values, name)

    if given("slack_client_id") or given("slack_client_secret"):
        for name in (
            "slack_client_id",
            "slack_client_secret",
            "public_url",
            "token_encryption_key",
        ):
            if not given(name):
                return f"{name.upper()} is not set (required to install into workspaces)"
    elif not given("slack_bot_token"):
        return "SLACK_BOT_TOKEN is not set"
    return None


def request_check_problem(values: Mapping[str, object]) -> str | None:
    """Slack's requests over HTTP are checked with the signing secret (Socket Mode's are not)."""
    if not _given(values, "slack_app_token") and not _given(values, "slack_signing_secret"):
        return "SLACK_SIGNING_SECRET is not set (required in HTTP mode)"
    return None


def access_problems(values: Mapping[str, object]) -> list[str]:
    """Every missing way to or from Slack and HighLevel."""
    checks = (slack_access_problem, request_check_problem, highlevel_access_problem)
    return [problem for check in checks if (problem := check(values)) is not None]


def describe_errors(exc: ValidationError) -> list[str]:
    """Turn pydantic's errors into one line per variable: what is wrong and what to set."""
    lines: list[str] = []
    seen: set[str] = set()
    for error in exc.errors():
        if error["loc"]:
            name = str(error["loc"][0]).upper()
            problem = "is not set" if error["type"] == "missing" else _reason(error["msg"])
        else:
            # Cross-field rule: its message starts with the variable's name.
            name, _, problem = error["msg"].removeprefix("Value error, ").partition(" ")
            name = name.upper()
        if name in seen:
            continue
        seen.add(name)
        hint = HINTS.get(name, "check its value")
        lines.append(f"ghl-bridge: {name} {problem}: {hint}.")
    return lines


def _reason(msg: str) -> str:
    reason = msg.removeprefix("Value error, ")
    return reason if reason.startswith(("is ", "must ")) else f"is invalid ({reason})"


def listed(entries: frozenset[str], team_id: str | None, slack_id: str | None) -> bool:
    """`slack_id` is in an allowlist whose entries are ids (in every workspace) or
    `TEAM:ID` (in that workspace only: ids are a workspace's own)."""
    if not slack_id:
        return False
    return slack_id in entries or (bool(team_id) and f"{team_id}:{slack_id}" in entries)
