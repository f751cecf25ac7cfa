"""ALLOWED_SLACK_USERS / ALLOWED_SLACK_CHANNELS: checked before any listener runs (an entry
`T…:U…` applies in that workspace only)."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from slack_bolt.async_app import AsyncApp, AsyncBoltContext, AsyncRespond
from slack_bolt.response import BoltResponse

from bot.compose import ComposeField
from bot.deps import Deps
from bot.settings import listed
from bot.ui.compose_state import (
    decode_context,
)
from bot.ui.notice_builder import denied_notice

log = logging.getLogger(__name__)


def register(app: AsyncApp, deps: Deps) -> None:
    users = deps.settings.allowed_slack_users
    channels = deps.settings.allowed_slack_channels
    if not users and not channels:
        return

    @app.middleware
    async def allowlist(
        body: dict[str, Any],
        context: AsyncBoltContext,
        respond: AsyncRespond,
        next: Callable[[], Awaitable[None]],
    ) -> BoltResponse | None:
        kind = body.get("type") or ("slash_command" if "command" in body else None)
        if kind in (None, "event_callback", "url_verification"):
            await next()  # events carry no person's request to send anything
            return None
        user = context.user_id
        channel = context.channel_id or _modal_channel(body)
        team = context.team_id
        if (not users or listed(users, team, user)) and (
            not channels or listed(channels, team, channel)
        ):
            await next()
            return None
        log.info("denied %s from user %s in channel %s", kind, user, channel)
        text, blocks = denied_notice()
        # Returning a response (instead of calling next) is how Bolt middleware answers alone.
        if kind == "slash_command":
            return _json_response(
                {
                    "response_type": "ephemeral",
                    "text": text,
                    "blocks": [block.to_dict() for block in blocks],
                }
            )
        if kind == "view_submission":
            return _json_response(
                {"response_action": "errors", "errors": {ComposeField.MESSAGE: text[:150]}}
            )
        if body.get("response_url") or context.response_url:
            await respond(
                text=text, blocks=blocks, response_type="ephemeral", replace_original=False
            )
        return BoltResponse(status=200, body="")


def _json_response(payload: dict[str, Any]) -> BoltResponse:
    return BoltResponse(
        status=200,
        body=json.dumps(payload),
        headers={"content-type": "application/json;charset=utf-8"},
    )


def _modal_channel(body: dict[str, Any]) -> str | None:
    # Modals carry no channel; the composer keeps the one it was opened from.
    metadata = (body.get("view") or {}).get("private_metadata") or ""
    try:
        return decode_context(metadata).channel_id
    except ValueError:
        return None
