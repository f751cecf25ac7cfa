"""The composer modal: opening it, keeping it current as a person types, and submitting it."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import time
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.compose import (
    ComposeContext,
    ComposeField,
    Draft,
    FieldErrors,
    available_channels,
    check_draft,
    unreachable_reason,
)
from bot.deps import Deps
from bot.highlevel import Contact, HighLevelError
from bot.outbound import NOT_SAVED, ComposeRejected, SlackOrigin
from bot.outbound.intents import ComposerIntent
from bot.recipients import RecipientError, parse_recipient
from bot.ui.compose_builder import (
    COMPOSE_CALLBACK_ID,
    compose_view,
    decode_context,
    field_errors,
    read_draft,
)
from bot.ui.notice_builder import not_in_channel_notice

log = logging.getLogger(__name__)

# Slack waits 3 s for a view_submission answer; keep the HighLevel lookup well inside it.
SUBMIT_LOOKUP_SECONDS = 2.0
# A submission's answer waits for the contact lookup, then for its intent to be saved
# (normally a millisecond); together no longer than the lookup alone may take elsewhere.
SUBMIT_ACCEPT_LOOKUP_SECONDS = 1.5
INTENT_SAVE_WAIT_SECONDS = SUBMIT_LOOKUP_SECONDS - SUBMIT_ACCEPT_LOOKUP_SECONDS
LIVE_ACTIONS = re.compile(
    f"^({ComposeField.CHANNEL}|{ComposeField.MESSAGE}|{ComposeField.RECIPIENT})$"
)


async def open_composer(
    client: AsyncWebClient, trigger_id: str, draft: Draft, context: ComposeContext
) -> str | None:
    """Open the composer (inside the trigger's 3 s window); returns the view id."""
    response = await client.views_open(
        trigger_id=trigger_id, view=compose_view(draft, context, now=time.time())
    )
    view = response.get("view") or {}
    view_id = view.get("id")
    return str(view_id) if view_id else None


async def narrow_to_contact(
    deps: Deps, client: AsyncWebClient, view_id: str, draft: Draft, context: ComposeContext
) -> None:
    """After opening with a recipient: offer only the channels that contact can receive."""
    try:
        recipient = parse_recipient(draft.recipient, deps.settings.phone_default_region)
        resolved = await asyncio.wait_for(
            deps.contacts.resolve(recipient, create=False), SUBMIT_LOOKUP_SECONDS
        )
    except (RecipientError, LookupError, HighLevelError, TimeoutError):
        return  # the composer still works; the checks at submit say what is wrong
    narrowed = _with_contact(context, resolved.contact)
    try:
        await client.views_update(
            view_id=view_id, view=compose_view(draft, narrowed, now=time.time())
        )
    except SlackApiError as exc:
        log.debug("could not narrow the composer: %s", exc.response.get("error"))


def _with_contact(context: ComposeContext, contact: Contact) -> ComposeContext:
    return ComposeContext(
        channel_id=context.channel_id,
        thread_ts=context.thread_ts,
        reply=context.reply,
        available=available_channels(contact),
    )


def _idempotency_key(view: dict[str, Any], draft: Draft) -> str:
    # One view sends once: a double-clicked submit or a replayed request carries the same view
    # id and the same values.
    digest = hashlib.sha256(repr(draft).encode("utf-8")).hexdigest()[:16]
    return f"view:{view.get('id')}:{digest}"


def register(app: AsyncApp, deps: Deps) -> None:
    region = deps.settings.phone_default_region

    @app.action(LIVE_ACTIONS)
    async def live_update(ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient) -> None:
        """Channel changed, message typed, or recipient entered: re-render the composer."""
        await ack()
        view = body.get("view") or {}
        if view.get("callback_id") != COMPOSE_CALLBACK_ID:
            return
        try:
            context = decode_context(view.get("private_metadata") or "")
        except ValueError:
            return
        draft = read_draft(view.get("state", {}).get("values", {}))
        action = (body.get("actions") or [{}])[0].get("action_id")
        if action == ComposeField.RECIPIENT and context.reply is None:
            try:
                recipient = parse_recipient(draft.recipient, region)
                resolved = await asyncio.wait_for(
                    deps.contacts.resolve(recipient, create=False), SUBMIT_LOOKUP_SECONDS
                )
                context = _with_contact(context, resolved.contact)
            except (RecipientError, LookupError, HighLevelError, TimeoutError):
                context = ComposeContext(
                    channel_id=context.channel_id, thread_ts=context.thread_ts, reply=None
                )
        try:
            await client.views_update(
                view_id=view["id"],
                hash=view.get("hash"),
                view=compose_view(draft, context, now=time.time()),
            )
        except SlackApiError as exc:
            # hash_conflict: a newer update is already on screen; nothing is lost.
            log.debug("composer update skipped: %s", exc.response.get("error"))

    @app.view(COMPOSE_CALLBACK_ID)
    async def submit(ack: AsyncAck, body: dict[str, Any], view: dict[str, Any]) -> None:
        try:
            context = decode_context(view.get("private_metadata") or "")
        except ValueError:
            await ack(
                response_action="errors",
                errors={ComposeField.MESSAGE: "This composer is out of date; open a new one."},
            )
            return
        draft = read_draft(view.get("state", {}).get("values", {}))
        present = [block.get("block_id") for block in view.get("blocks", [])]
        checked = check_draft(draft, now=time.time(), region=region, replying=bool(context.reply))
        if isinstance(checked, FieldErrors):
            await ack(response_action="errors", errors=field_errors(checked, present))
            return
        user = body["user"]["id"]
        team = (body.get("team") or {}).get("id") or body["user"].get("team_id", "")
        origin = SlackOrigin(team_id=team, channel_id=context.channel_id, user_id=user)
        outbound = deps.outbound
        if not await outbound.can_post(context.channel_id):
            text, _ = not_in_channel_notice(context.channel_id)
            errors = FieldErrors({ComposeField.MESSAGE: text})
            await ack(response_action="errors", errors=field_errors(errors, present))
            return

        # Find the contact inside Slack's window so "unreachable" is a field error; a slow
        # HighLevel does not lose the send: the lookup goes on and the outcome is posted.
        lookup = asyncio.ensure_future(outbound.find_contact(checked, context.reply))
        try:
            await asyncio.wait_for(asyncio.shield(lookup), SUBMIT_ACCEPT_LOOKUP_SECONDS)
        except TimeoutError:
            pass
        except ComposeRejected as exc:
            field = ComposeField(exc.field) if exc.field else ComposeField.MESSAGE
            await ack(
                response_action="errors",
                errors=field_errors(FieldErrors({field: exc.message}), present),
            )
            return
        else:
            contact, _created = lookup.result()
            reason = unreachable_reason(contact, checked.channel)
            if reason is not None:
                errors = FieldErrors({ComposeField.CHANNEL: reason})
                await ack(response_action="errors", errors=field_errors(errors, present))
                return

        # Accepted: saved before the ack that closes the modal, so a stop or a crash after it
        # cannot lose the send (the next start finishes it and tells the person).
        intent = ComposerIntent(
            key=_idempotency_key(view, draft), origin=origin, draft=draft, reply=context.reply
        )
        recording = await deps.intents.record(intent, wait=INTENT_SAVE_WAIT_SECONDS)
        if recording.refused:
            lookup.cancel()
            errors = FieldErrors({ComposeField.MESSAGE: NOT_SAVED})
            await ack(response_action="errors", errors=field_errors(errors, present))
            return
        await ack()
        notice = await deps.intents.finish(
            intent, recording=recording, lookup=lookup, announce_queued=False
        )
        if notice is not None:
            await outbound.notify(context.channel_id, user, notice.text, notice.blocks)
        log.debug("composer %s finished", view.get("id"))
