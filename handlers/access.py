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
from bot.ui.assign_builder import read_assign_metadata
from bot.ui.compose_builder import COMPOSE_CALLBACK_ID
from bot.ui.compose_state import decode_context
from bot.ui.home_builder import HOME_SEARCH_CALLBACK
from bot.ui.notice_builder import denied_notice, notice_view

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
        # The Home tab and its search belong to no channel: the person is checked, and what
        # they open is posted in the sub-account's own inbox or linked channel.
        channel_free = _from_home(body)
        if (not users or listed(users, team, user)) and (
            not channels or channel_free or listed(channels, team, channel)
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
            view = body.get("view") or {}
            if view.get("callback_id") == COMPOSE_CALLBACK_ID:
                return _json_response(
                    {"response_action": "errors", "errors": {ComposeField.MESSAGE: text[:150]}}
                )
            # Another modal (Assign…): it says so in place of its form.
            denied = notice_view(str((view.get("title") or {}).get("text") or "Not allowed"), text)
            return _json_response({"response_action": "update", "view": denied.to_dict()})
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
    # Modals carry no channel; the composer and Assign keep the one they were opened from.
    metadata = (body.get("view") or {}).get("private_metadata") or ""
    assign = read_assign_metadata(metadata)
    if assign is not None:
        return assign[1]
    try:
        return decode_context(metadata).channel_id
    except ValueError:
        return None


def _from_home(body: dict[str, Any]) -> bool:
    """A click on the Home tab, or its contact search."""
    view = body.get("view") or {}
    return view.get("type") == "home" or view.get("callback_id") == HOME_SEARCH_CALLBACK
