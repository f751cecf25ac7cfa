"""The composer modal: keeping it current as a person works in it, and submitting it.

Opening and rendering it is `handlers.compose_view`; its searches (recipients, templates)
are `handlers.compose_options`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Awaitable
from typing import Any, TypeVar

from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.compose import (
    Choice,
    ComposeContext,
    ComposeField,
    ContactCard,
    Draft,
    FieldErrors,
    check_draft,
    unreachable_reason,
)
from bot.compose.finish import (
    ContactNeededError,
    UnknownMergeFieldsError,
    changes_text,
    check_merge_fields,
    finished,
    preview,
    uses_merge_fields,
)
from bot.deps import Deps
from bot.highlevel import HighLevelError, MessageChannel, TemplateKind
from bot.outbound import NOT_SAVED, ComposeRejected, SlackOrigin
from bot.outbound.finishing import Sender
from bot.outbound.intents import ComposerIntent
from bot.ui.compose_builder import COMPOSE_CALLBACK_ID, field_errors
from bot.ui.compose_sections import PREVIEW_BLOCK, preview_blocks
from bot.ui.compose_state import decode_context, read_draft
from bot.ui.notice_builder import not_in_channel_notice
from handlers.compose_view import (
    EXTRAS_SECONDS,
    LOOKUP_SECONDS,
    location_of,
    look_up,
    origin_of,
    render,
    sub_account_choices,
)

log = logging.getLogger(__name__)

_T = TypeVar("_T")

# Slack waits 3 s for a view_submission answer; keep the HighLevel lookup well inside it.
SUBMIT_LOOKUP_SECONDS = 2.0
# A submission's answer waits for the contact lookup, then for its intent to be saved
# (normally a millisecond); together no longer than the lookup alone may take elsewhere.
SUBMIT_ACCEPT_LOOKUP_SECONDS = 1.5
INTENT_SAVE_WAIT_SECONDS = SUBMIT_LOOKUP_SECONDS - SUBMIT_ACCEPT_LOOKUP_SECONDS
LIVE_ACTIONS = re.compile(
    f"^({ComposeField.CHANNEL}|{ComposeField.MESSAGE}|{ComposeField.RECIPIENT}"
    f"|{ComposeField.SUB_ACCOUNT}|{ComposeField.TEMPLATE}|{ComposeField.REPLY_MODE})$"
)
CHOOSE_SUB_ACCOUNT = "Choose the HighLevel sub-account to send from."
# The composer was opened when the channel's sub-account was clear, and no longer is.
SUB_ACCOUNT_NOW_NEEDED = (
    "several are connected now; cancel, and open the composer again to choose one."
)
MERGE_SLOW = (
    "HighLevel is slow to answer, so the merge fields can't be filled yet. Send again in a moment."
)
CHECK_PREVIEW = "⚠ Check the preview below (it changed), then send again."
QUIET_NOW = "⚠ It is now quiet hours for this contact: choose when to send, then send again."
TEMPLATE_CHANNELS = {
    TemplateKind.SMS: MessageChannel.SMS,
    TemplateKind.EMAIL: MessageChannel.EMAIL,
    TemplateKind.WHATSAPP: MessageChannel.WHATSAPP,
}


def _idempotency_key(view: dict[str, Any], draft: Draft) -> str:
    # One view sends once: a double-clicked submit or a replayed request carries the same view
    # id and the same values.
    digest = hashlib.sha256(repr(draft).encode("utf-8")).hexdigest()[:16]
    return f"view:{view.get('id')}:{digest}"


async def _applied_template(
    deps: Deps, draft: Draft, context: ComposeContext, origin: SlackOrigin
) -> tuple[Draft, ComposeContext]:
    """The chosen template's text in the draft (a new revision of the message inputs, so
    Slack shows it), and its channel when it is for another one."""
    if not draft.template_id:
        return draft, dataclasses.replace(context, template=None)
    location_id = await location_of(deps, draft, context, origin)
    template = None
    if location_id:
        try:
            template = await asyncio.wait_for(
                deps.assist.template(location_id, draft.template_id), SUBMIT_LOOKUP_SECONDS
            )
        except (HighLevelError, TimeoutError):
            template = None
    if template is None:
        return dataclasses.replace(draft, template_id=""), dataclasses.replace(
            context, template=None
        )
    channel = TEMPLATE_CHANNELS.get(template.kind, draft.channel)
    if template.kind is TemplateKind.SMS and draft.channel is not MessageChannel.EMAIL:
        channel = draft.channel  # an SMS template's text suits any text channel
    filled = dataclasses.replace(
        draft,
        channel=channel,
        message=template.body or "",
        subject=template.subject or draft.subject,
        html=template.html or "",
    )
    return filled, dataclasses.replace(
        context,
        template=Choice(template.id, template.name or template.id),
        revision=context.revision + 1,
    )


async def _template_unchanged(
    deps: Deps, draft: Draft, context: ComposeContext, origin: SlackOrigin
) -> bool:
    """Whether the draft still carries its template's text as the template has it: only then
    does HighLevel hear `templateId`."""
    if not draft.template_id:
        return False
    location_id = await location_of(deps, draft, context, origin)
    try:
        template = await asyncio.wait_for(
            deps.assist.template(location_id, draft.template_id), EXTRAS_SECONDS
        )
    except (HighLevelError, TimeoutError):
        return False
    if template is None:
        return False
    return (
        draft.message.strip() == (template.body or "").strip()
        and draft.html.strip() == (template.html or "").strip()
    )


async def _within(call: Awaitable[_T], default: _T) -> _T:
    """`call`'s answer within EXTRAS_SECONDS (a submission must be answered in 3 s), else
    `default`."""
    try:
        return await asyncio.wait_for(call, EXTRAS_SECONDS)
    except (HighLevelError, TimeoutError):
        return default


async def _place_name(deps: Deps, location_id: str) -> str:
    return (await deps.assist.place(location_id)).name


def _shown_preview(view: dict[str, Any]) -> str | None:
    """The preview's text in a submitted view, None when it showed none."""
    for block in view.get("blocks", []):
        if block.get("block_id") == PREVIEW_BLOCK:
            text = (block.get("text") or {}).get("text")
            return text if isinstance(text, str) else None
    return None


class LatestActions:
    """The newest action seen per composer (this instance's), so an update refused with
    hash_conflict can tell a newer update from the fill-in after opening."""

    def __init__(self, size: int = 1_000) -> None:
        self._size = size
        self._latest: OrderedDict[str, float] = OrderedDict()

    def see(self, view_id: str, stamp: float) -> None:
        if stamp >= self._latest.get(view_id, 0.0):
            self._latest[view_id] = stamp
            self._latest.move_to_end(view_id)
        while len(self._latest) > self._size:
            self._latest.popitem(last=False)

    def is_latest(self, view_id: str, stamp: float) -> bool:
        return stamp >= self._latest.get(view_id, 0.0)


def _action_stamp(body: dict[str, Any]) -> float:
    try:
        return float((body.get("actions") or [{}])[0].get("action_ts") or 0.0)
    except (TypeError, ValueError):
        return 0.0


def register(app: AsyncApp, deps: Deps) -> None:
    region = deps.settings.phone_default_region
    latest = LatestActions()

    @app.action(LIVE_ACTIONS)
    async def live_update(ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient) -> None:
        """The recipient, sub-account, channel, template or reply mode changed, or the message
        was typed: re-render the composer."""
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
        stamp = _action_stamp(body)
        latest.see(view["id"], stamp)
        origin = origin_of(body, context)
        choices = await sub_account_choices(deps, origin.team_id, origin.channel_id, context)
        # A contact is looked up in one sub-account: again when another one is chosen.
        if context.reply is None and (
            action == ComposeField.RECIPIENT
            or (action == ComposeField.SUB_ACCOUNT and draft.recipient.strip())
        ):
            context, _history = await look_up(deps, draft, context, origin)
        elif (
            context.contact is None
            and not context.new_contact
            and (draft.recipient.strip() or context.reply is not None)
        ):
            # Changed before the contact was filled in after opening: look it up here, since
            # that update gives way to this one.
            context, _history = await look_up(deps, draft, context, origin)
        if action == ComposeField.TEMPLATE:
            draft, context = await _applied_template(deps, draft, context, origin)
        elif action == ComposeField.REPLY_MODE and context.reply is not None:
            cc = context.reply.reply_all_cc if draft.reply_all else ""
            draft = dataclasses.replace(draft, cc=cc)
            context = dataclasses.replace(context, revision=context.revision + 1)
        shown = await render(
            deps, draft, context, origin, sub_accounts=choices, seconds=LOOKUP_SECONDS
        )
        try:
            await client.views_update(view_id=view["id"], hash=view.get("hash"), view=shown)
        except SlackApiError as exc:
            if exc.response.get("error") != "hash_conflict" or not latest.is_latest(
                view["id"], stamp
            ):
                # A newer update is on screen already; nothing is lost.
                log.debug("composer update skipped: %s", exc.response.get("error"))
                return
            # What changed the view since is the fill-in after opening, which this (newest)
            # update includes: it goes over it.
            try:
                await client.views_update(view_id=view["id"], view=shown)
            except SlackApiError as again:
                log.debug("composer update skipped: %s", again.response.get("error"))

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

    async def _errors(ack: AsyncAck, found: dict[ComposeField, str], present: list[Any]) -> None:
        await ack(response_action="errors", errors=field_errors(FieldErrors(found), present))

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
        origin = origin_of(body, context)
        missing = await _missing_sub_account(draft, context, origin, present)
        found = dict(checked.errors) if isinstance(checked, FieldErrors) else {}
        if missing:
            found[ComposeField.SUB_ACCOUNT] = missing
        try:
            check_merge_fields(draft)
        except UnknownMergeFieldsError as exc:
            found.setdefault(ComposeField.MESSAGE, f"{exc}.")
        if found or isinstance(checked, FieldErrors):
            await _errors(ack, found, present)
            return
        outbound = deps.outbound
        if not await outbound.can_post(origin.team_id, context.channel_id):
            text, _ = not_in_channel_notice(context.channel_id)
            await _errors(ack, {ComposeField.MESSAGE: text}, present)
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
            await _errors(ack, {field: exc.message}, present)
            return
        # What follows is normally cached from the composer's updates; a slow answer is left
        # out here and done again when the send is made (quiet hours then hold it).
        sender = await _within(
            deps.finisher.sender(origin.team_id, origin.user_id), Sender.unknown()
        )
        if not lookup.done():
            if uses_merge_fields(draft):
                lookup.cancel()
                await _errors(ack, {ComposeField.MESSAGE: MERGE_SLOW}, present)
                return
        else:
            contact, _created = lookup.result()
            reason = unreachable_reason(contact, checked.channel)
            if reason is not None:
                await _errors(ack, {ComposeField.CHANNEL: reason}, present)
                return
            known = dataclasses.replace(context, contact=ContactCard.of(contact))
            location_id = await location_of(deps, draft, context, origin)
            quiet = await _within(deps.finisher.quiet(draft, known.contact, location_id), None)
            if quiet is not None and ComposeField.QUIET_HOURS.value not in present:
                lookup.cancel()
                await ack(
                    response_action="update",
                    view=await render(deps, draft, known, origin, notice=QUIET_NOW),
                )
                return
            context = known
        if changes_text(draft, sender.signature):
            place_name = ""
            location_id = await location_of(deps, draft, context, origin)
            if location_id and uses_merge_fields(draft):
                place_name = await _within(_place_name(deps, location_id), "")
            try:
                fresh = preview(
                    draft,
                    contact=context.contact,
                    location_name=place_name,
                    sender=sender.values,
                    signature=sender.signature,
                )
            except ContactNeededError:
                lookup.cancel()
                await _errors(ack, {ComposeField.MESSAGE: MERGE_SLOW}, present)
                return
            if (
                _shown_preview(view)
                != preview_blocks(fresh, draft.channel)[0].to_dict()["text"]["text"]
            ):
                # What the person saw is what goes: show them this one first.
                lookup.cancel()
                await ack(
                    response_action="update",
                    view=await render(deps, draft, context, origin, notice=CHECK_PREVIEW),
                )
                return
            template_kept = await _template_unchanged(deps, draft, context, origin)
            draft = dataclasses.replace(
                finished(draft, fresh), template_id=draft.template_id if template_kept else ""
            )
        elif draft.template_id and not await _template_unchanged(deps, draft, context, origin):
            draft = dataclasses.replace(draft, template_id="")

        if draft.channel is MessageChannel.CUSTOM:
            draft = dataclasses.replace(draft, conversation_provider_id=context.custom_provider_id)

        # Accepted: saved before the ack that closes the modal, so a stop or a crash after it
        # cannot lose the send (the next start finishes it and tells the person).
        intent = ComposerIntent(
            key=_idempotency_key(view, draft), origin=origin, draft=draft, reply=context.reply
        )
        recording = await deps.intents.record(intent, wait=INTENT_SAVE_WAIT_SECONDS)
        if recording.refused:
            lookup.cancel()
            await _errors(ack, {ComposeField.MESSAGE: NOT_SAVED}, present)
            return
        await ack()
        notice = await deps.intents.finish(
            intent, recording=recording, lookup=lookup, announce_queued=False
        )
        if notice is not None:
            await outbound.notify(origin, notice.text, notice.blocks)
        log.debug("composer %s finished", view.get("id"))
