"""Buttons on thread posts: Reply, Cancel (scheduled), Resend (uncertain) and Retry (failed)."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncRespond
from slack_sdk.web.async_client import AsyncWebClient

from bot.compose import ComposeContext
from bot.deps import Deps
from bot.outbound import ComposeRejected, SlackOrigin
from bot.ui.notice_builder import error_notice
from bot.ui.thread_builder import CANCEL_ACTION, REPLY_ACTION, RESEND_ACTION, RETRY_ACTION
from handlers.compose_view import enrich_composer, open_composer

log = logging.getLogger(__name__)


def _action_value(body: dict[str, Any]) -> int | None:
    try:
        return int((body.get("actions") or [{}])[0].get("value", ""))
    except (TypeError, ValueError):
        return None


def _origin(body: dict[str, Any]) -> SlackOrigin:
    return SlackOrigin(
        team_id=(body.get("team") or {}).get("id", ""),
        channel_id=(body.get("channel") or {}).get("id", ""),
        user_id=body["user"]["id"],
    )


def register(app: AsyncApp, deps: Deps) -> None:
    outbound = deps.outbound

    async def tell(respond: AsyncRespond, title: str, detail: str) -> None:
        text, blocks = error_notice(title, detail)
        await respond(text=text, blocks=blocks, response_type="ephemeral", replace_original=False)

    @app.action(REPLY_ACTION)
    async def reply(
        ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient, respond: AsyncRespond
    ) -> None:
        await ack()
        thread_id = _action_value(body)
        origin = _origin(body)
        try:
            if thread_id is None:
                raise ComposeRejected("This button is not linked to a conversation.")
            context, draft = await outbound.reply_context(thread_id)
        except ComposeRejected as exc:
            await tell(respond, "Can't reply here", exc.message)
            return
        message = body.get("message") or {}
        compose_context = ComposeContext(
            channel_id=origin.channel_id,
            thread_ts=message.get("thread_ts") or message.get("ts"),
            reply=context,
        )
        opened = await open_composer(client, body["trigger_id"], draft, compose_context)
        if opened:
            await enrich_composer(deps, client, opened, draft, compose_context, origin)

    @app.action(CANCEL_ACTION)
    async def cancel(ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond) -> None:
        await ack()
        outbox_id = _action_value(body)
        try:
            if outbox_id is None:
                raise ComposeRejected("This button is not linked to a message.")
            await outbound.cancel_scheduled(outbox_id)
        except ComposeRejected as exc:
            await tell(respond, "Couldn't cancel the scheduled message", exc.message)

    @app.action(RESEND_ACTION)
    @app.action(RETRY_ACTION)
    async def send_again(ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond) -> None:
        await ack()
        outbox_id = _action_value(body)
        try:
            if outbox_id is None:
                raise ComposeRejected("This button is not linked to a message.")
            await outbound.send_again(outbox_id, _origin(body))
        except ComposeRejected as exc:
            await tell(respond, "Couldn't send it again", exc.message)
