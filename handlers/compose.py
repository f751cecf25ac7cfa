"""The composer modal: opening it, keeping it current as a person types, and submitting it."""

from __future__ import annotations

import asyncio
import dataclasses
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
    SubAccountOption,
    compose_view,
    field_errors,
)
from bot.ui.compose_state import (
    decode_context,
    read_draft,
)
from bot.ui.notice_builder import not_in_channel_notice
from storage import StoreError

log = logging.getLogger(__name__)

# Slack waits 3 s for a view_submission answer; keep the HighLevel lookup well inside it.
SUBMIT_LOOKUP_SECONDS = 2.0
# A submission's answer waits for the contact lookup, then for its intent to be saved
# (normally a millisecond); together no longer than the lookup alone may take elsewhere.
SUBMIT_ACCEPT_LOOKUP_SECONDS = 1.5
INTENT_SAVE_WAIT_SECONDS = SUBMIT_LOOKUP_SECONDS - SUBMIT_ACCEPT_LOOKUP_SECONDS
LIVE_ACTIONS = re.compile(
    f"^({ComposeField.CHANNEL}|{ComposeField.MESSAGE}|{ComposeField.RECIPIENT}"
    f"|{ComposeField.SUB_ACCOUNT})$"
)
CHOOSE_SUB_ACCOUNT = "Choose the HighLevel sub-account to send from."
# The composer was opened when the channel's sub-account was clear, and no longer is.
SUB_ACCOUNT_NOW_NEEDED = (
    "several are connected now; cancel, and open the composer again to choose one."
)


async def sub_account_choices(
    deps: Deps, team_id: str, channel_id: str, context: ComposeContext
) -> tuple[SubAccountOption, ...]:
    """The sub-accounts the composer offers: none when the channel (linked, or the only one
    connected) or the thread decides, the connected ones otherwise."""
    if context.reply is not None or context.thread_ts is not None:
        return ()
    try:
        route = await deps.routing.route(team_id, channel_id)
    except StoreError as exc:
        # The composer still opens; the send is checked again at submit.
        log.warning("could not read the routing of %s: %s", channel_id, exc)
        return ()
    if route.location_id is not None:
        return ()
    return tuple(
        SubAccountOption(record.location_id, record.name or record.location_id)
        for record in route.choices
    )


async def open_composer(
    client: AsyncWebClient,
    trigger_id: str,
    draft: Draft,
    context: ComposeContext,
    *,
    sub_accounts: tuple[SubAccountOption, ...] = (),
) -> str | None:
    """Open the composer (inside the trigger's 3 s window); returns the view id."""
    response = await client.views_open(
        trigger_id=trigger_id,
        view=compose_view(draft, context, now=time.time(), sub_accounts=sub_accounts),
    )
    view = response.get("view") or {}
    view_id = view.get("id")
    return str(view_id) if view_id else None


async def narrow_to_contact(
    deps: Deps,
    client: AsyncWebClient,
    view_id: str,
    draft: Draft,
    context: ComposeContext,
    origin: SlackOrigin,
    *,
    sub_accounts: tuple[SubAccountOption, ...] = (),
) -> None:
    """After opening with a recipient: offer only the channels that contact can receive."""
    try:
        recipient = parse_recipient(draft.recipient, deps.settings.phone_default_region)
        contact = await asyncio.wait_for(
            deps.outbound.known_contact(recipient, origin, draft.location_id),
            SUBMIT_LOOKUP_SECONDS,
        )
    except (RecipientError, LookupError, HighLevelError, TimeoutError):
        return  # the composer still works; the checks at submit say what is wrong
    if contact is None:
        return
    narrowed = _with_contact(context, contact)
    try:
        await client.views_update(
            view_id=view_id,
            view=compose_view(draft, narrowed, now=time.time(), sub_accounts=sub_accounts),
        )
    except SlackApiError as exc:
        log.debug("could not narrow the composer: %s", exc.response.get("error"))


def _with_contact(context: ComposeContext, contact: Contact) -> ComposeContext:
    return dataclasses.replace(context, available=available_channels(contact))


def _origin(body: dict[str, Any], context: ComposeContext) -> SlackOrigin:
    user = body["user"]
    team = (body.get("team") or {}).get("id") or user.get("team_id", "")
    return SlackOrigin(team_id=team, channel_id=context.channel_id, user_id=user["id"])


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
        draft = read_draft(
            view.get("state", {}).get("values", {}), message_files=context.message_files
        )
        action = (body.get("actions") or [{}])[0].get("action_id")
        origin = _origin(body, context)
        choices = await sub_account_choices(deps, origin.team_id, origin.channel_id, context)
        # A contact is looked up in one sub-account: again when another one is chosen.
        look_up = action == ComposeField.RECIPIENT or (
            action == ComposeField.SUB_ACCOUNT and draft.recipient.strip()
        )
        if look_up and context.reply is None:
            try:
                recipient = parse_recipient(draft.recipient, region)
                contact = await asyncio.wait_for(
                    deps.outbound.known_contact(recipient, origin, draft.location_id),
                    SUBMIT_LOOKUP_SECONDS,
                )
                if contact is None:
                    raise LookupError("no such contact")
                context = _with_contact(context, contact)
            except (RecipientError, LookupError, HighLevelError, TimeoutError):
                context = dataclasses.replace(context, reply=None, available=None)
        try:
            await client.views_update(
                view_id=view["id"],
                hash=view.get("hash"),
                view=compose_view(draft, context, now=time.time(), sub_accounts=choices),
            )
        except SlackApiError as exc:
            # hash_conflict: a newer update is already on screen; nothing is lost.
            log.debug("composer update skipped: %s", exc.response.get("error"))

    async def _missing_sub_account(
        draft: Draft, context: ComposeContext, origin: SlackOrigin, present: list[Any]
    ) -> str | None:
        """Why the draft needs a sub-account chosen, if it does."""
        if context.reply is not None or context.thread_ts is not None or draft.location_id:
            return None
        if ComposeField.SUB_ACCOUNT.value in present:
            return CHOOSE_SUB_ACCOUNT
        if await sub_account_choices(deps, origin.team_id, origin.channel_id, context):
            return SUB_ACCOUNT_NOW_NEEDED
        return None

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
        draft = read_draft(
            view.get("state", {}).get("values", {}), message_files=context.message_files
        )
        present = [block.get("block_id") for block in view.get("blocks", [])]
        checked = check_draft(draft, now=time.time(), region=region, replying=bool(context.reply))
        origin = _origin(body, context)
        missing = await _missing_sub_account(draft, context, origin, present)
        if isinstance(checked, FieldErrors) or missing:
            found = dict(checked.errors) if isinstance(checked, FieldErrors) else {}
            if missing:
                found[ComposeField.SUB_ACCOUNT] = missing
            await ack(response_action="errors", errors=field_errors(FieldErrors(found), present))
            return
        outbound = deps.outbound
        if not await outbound.can_post(origin.team_id, context.channel_id):
            text, _ = not_in_channel_notice(context.channel_id)
            errors = FieldErrors({ComposeField.MESSAGE: text})
            await ack(response_action="errors", errors=field_errors(errors, present))
            return

        # Find the contact inside Slack's window so "unreachable" is a field error; a slow
        # HighLevel does not lose the send: the lookup goes on and the outcome is posted.
        lookup = asyncio.ensure_future(outbound.find_contact(checked, origin, context.reply))
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
            await outbound.notify(origin, notice.text, notice.blocks)
        log.debug("composer %s finished", view.get("id"))
