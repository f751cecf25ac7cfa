"""The message shortcut "Reply via HighLevel": answer a conversation from any of its messages."""

from __future__ import annotations

import dataclasses
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncRespond
from slack_sdk.web.async_client import AsyncWebClient

from bot.compose import ComposeContext
from bot.deps import Deps
from bot.outbound import ComposeRejected, SlackOrigin
from bot.ui.compose_state import file_refs
from bot.ui.inbound_builder import shortcut_outside_thread_notice
from bot.ui.notice_builder import error_notice
from handlers.compose_view import enrich_composer, open_composer

REPLY_SHORTCUT = "reply_via_highlevel"


def register(app: AsyncApp, deps: Deps) -> None:
    outbound = deps.outbound

    @app.shortcut(REPLY_SHORTCUT)
    async def reply_via_highlevel(
        ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient, respond: AsyncRespond
    ) -> None:
        await ack()
        channel_id = (body.get("channel") or {}).get("id", "")
        team_id = (body.get("team") or {}).get("id", "")
        message = body.get("message") or {}
        ts = str(message.get("ts", ""))
        thread_id = await outbound.thread_for_slack_message(
            team_id, channel_id, ts, message.get("thread_ts")
        )
        if thread_id is None:
            text, blocks = shortcut_outside_thread_notice()
            await respond(text=text, blocks=blocks, response_type="ephemeral")
            return
        try:
            reply, draft = await outbound.reply_context(
                thread_id, channel_id=channel_id, message_ts=ts
            )
        except ComposeRejected as exc:
            text, blocks = error_notice("Can't reply here", exc.message)
            await respond(text=text, blocks=blocks, response_type="ephemeral")
            return
        # The message's files are offered as checkboxes (deleted and external ones can't be
        # fetched, so they are not). A person's files start checked; files the bridge posted
        # (a customer's photo) start unchecked: sending them back is rarely the reply meant.
        files = file_refs(message.get("files"))
        context = ComposeContext(
            channel_id=channel_id,
            thread_ts=message.get("thread_ts") or ts,
            reply=reply,
            message_files=files,
        )
        posted_by_a_bot = bool(message.get("bot_id")) or message.get("subtype") == "bot_message"
        if files and not posted_by_a_bot:
            draft = dataclasses.replace(draft, files=files)
        opened = await open_composer(client, body["trigger_id"], draft, context)
        if opened:
            origin = SlackOrigin(
                team_id=team_id,
                channel_id=channel_id,
                user_id=(body.get("user") or {}).get("id", ""),
            )
            await enrich_composer(deps, client, opened, draft, context, origin)
