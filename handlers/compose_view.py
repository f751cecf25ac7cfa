"""Opening and re-rendering the composer: what it shows besides what was typed (the contact's
channels and appointments, the preview of what is sent, the quiet-hours choice)."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, TypeVar

from slack_sdk.errors import SlackApiError
from slack_sdk.models.views import View
from slack_sdk.web.async_client import AsyncWebClient

from bot.compose import Choice, ComposeContext, ContactCard, Draft
from bot.compose.channels import ChannelHistory, offered_channels
from bot.compose.finish import (
    ContactNeededError,
    Preview,
    QuietChoice,
    UnknownMergeFieldsError,
    changes_text,
    preview,
)
from bot.deps import Deps
from bot.highlevel import Contact, HighLevelError, MessageChannel
from bot.outbound import SlackOrigin
from bot.outbound.finishing import Sender
from bot.recipients import RecipientError, RecipientKind, parse_recipient
from bot.ui.compose_builder import SubAccountOption, compose_view
from storage import StoreError

log = logging.getLogger(__name__)

_T = TypeVar("_T")

# Look-ups after the ack (the fill-in after opening, an update after a change) have no Slack
# deadline: only the person's patience, and a slow answer still improves the view.
LOOKUP_SECONDS = 10.0
# What an answer to Slack (a submission's update) waits for, well inside its 3 s.
EXTRAS_SECONDS = 1.0
MERGE_NEEDS_RECIPIENT = "Merge fields are filled in once the recipient is chosen."


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


def origin_of(body: dict[str, Any], context: ComposeContext) -> SlackOrigin:
    """Who works in the composer, and the channel it sends to."""
    user = body["user"]
    team = (body.get("team") or {}).get("id") or user.get("team_id", "")
    return SlackOrigin(team_id=team, channel_id=context.channel_id, user_id=user["id"])


async def location_of(
    deps: Deps, draft: Draft, context: ComposeContext, origin: SlackOrigin
) -> str:
    """The sub-account the send would go from, "" when not decided yet."""
    if context.reply is not None and context.reply.location_id:
        return context.reply.location_id
    if draft.location_id:
        return draft.location_id
    return await deps.outbound.quick_location(origin) or ""


async def extras(
    deps: Deps,
    draft: Draft,
    context: ComposeContext,
    origin: SlackOrigin,
    *,
    seconds: float = EXTRAS_SECONDS,
) -> tuple[Preview | None, str | None, QuietChoice | None, str | None]:
    """The preview (or why there is none), the quiet-hours choice and the sub-account's
    default From address for `draft` now; what HighLevel does not answer within `seconds` is
    left out."""
    location_id = await location_of(deps, draft, context, origin)
    default_from = await _default_from(deps, draft, location_id)
    try:
        sender = await asyncio.wait_for(
            deps.finisher.sender(origin.team_id, origin.user_id), seconds
        )
    except TimeoutError:
        sender = Sender.unknown()
    shown: Preview | None = None
    note: str | None = None
    if changes_text(draft, sender.signature):
        name = ""
        if location_id:
            try:
                name = (await asyncio.wait_for(deps.assist.place(location_id), seconds)).name
            except (HighLevelError, TimeoutError):
                name = ""
        try:
            shown = preview(
                draft,
                contact=context.contact,
                location_name=name,
                sender=sender.values,
                signature=sender.signature,
            )
        except UnknownMergeFieldsError as exc:
            note = f"⚠ {exc}."
        except ContactNeededError:
            note = MERGE_NEEDS_RECIPIENT
    quiet = None
    if location_id and context.contact is not None:
        try:
            quiet = await asyncio.wait_for(
                deps.finisher.quiet(draft, context.contact, location_id), seconds
            )
        except (HighLevelError, TimeoutError):
            quiet = None
    return shown, note, quiet, default_from


async def _default_from(deps: Deps, draft: Draft, location_id: str) -> str | None:
    """The sub-account's default From address (`/highlevel from`), for an email's From
    placeholder: from the cached record, without asking HighLevel."""
    if draft.channel is not MessageChannel.EMAIL or not location_id:
        return None
    try:
        record = await deps.accounts.get(location_id)
    except StoreError as exc:
        log.warning("could not read the sub-account %s: %s", location_id, exc)
        return None
    return record.email_from if record is not None else None


async def render(
    deps: Deps,
    draft: Draft,
    context: ComposeContext,
    origin: SlackOrigin,
    *,
    sub_accounts: tuple[SubAccountOption, ...] = (),
    notice: str | None = None,
    seconds: float = EXTRAS_SECONDS,
) -> View:
    shown, note, quiet, default_from = await extras(deps, draft, context, origin, seconds=seconds)
    return compose_view(
        draft,
        context,
        now=time.time(),
        sub_accounts=sub_accounts,
        preview=shown,
        preview_note=notice or note,
        quiet=quiet,
        default_from=default_from,
    )


@dataclass(frozen=True, slots=True)
class OpenedComposer:
    """A composer Slack has opened: its id, and the hash of what it first showed."""

    view_id: str
    hash: str | None


async def open_composer(
    client: AsyncWebClient,
    trigger_id: str,
    draft: Draft,
    context: ComposeContext,
    *,
    sub_accounts: tuple[SubAccountOption, ...] = (),
) -> OpenedComposer | None:
    """Open the composer (inside the trigger's 3 s window)."""
    response = await client.views_open(
        trigger_id=trigger_id,
        view=compose_view(draft, context, now=time.time(), sub_accounts=sub_accounts),
    )
    view = response.get("view") or {}
    view_id = view.get("id")
    if not view_id:
        return None
    return OpenedComposer(str(view_id), str(view["hash"]) if view.get("hash") else None)


async def _bounded(call: Awaitable[_T]) -> _T | None:
    """What HighLevel answers within LOOKUP_SECONDS, None otherwise."""
    try:
        return await asyncio.wait_for(call, LOOKUP_SECONDS)
    except (HighLevelError, TimeoutError):
        return None


async def with_contact(
    deps: Deps, context: ComposeContext, contact: Contact, location_id: str
) -> tuple[ComposeContext, ChannelHistory | None]:
    """`context` knowing `contact`: the channels that can work for them (what they can
    receive, where a conversation is), their appointments; and their channel history."""
    appointments: tuple[Choice, ...] | None = None
    history = sub_account = None
    if location_id:
        appointments, history, sub_account = await asyncio.gather(
            _bounded(deps.assist.appointments(location_id, contact.id)),
            _bounded(deps.assist.history(location_id, contact.id)),
            _bounded(deps.assist.sub_account_channels(location_id)),
        )
    known = dataclasses.replace(
        context,
        available=offered_channels(contact, history, sub_account),
        contact=ContactCard.of(contact),
        new_contact=False,
        appointments=appointments or (),
        custom_provider_id=history.custom_provider_id if history is not None else "",
    )
    return known, history


async def look_up(
    deps: Deps, draft: Draft, context: ComposeContext, origin: SlackOrigin
) -> tuple[ComposeContext, ChannelHistory | None]:
    """`context` after the recipient changed: a known contact, a new one, or nobody yet."""
    cleared = dataclasses.replace(
        context, available=None, contact=None, new_contact=False, appointments=()
    )
    region = deps.settings.phone_default_region
    location_id = await location_of(deps, draft, context, origin)
    try:
        if context.reply is not None:
            recipient = parse_recipient(context.reply.contact_id, region)
        else:
            recipient = parse_recipient(draft.recipient, region)
        contact = await asyncio.wait_for(
            deps.outbound.known_contact(recipient, origin, location_id), LOOKUP_SECONDS
        )
    except (RecipientError, LookupError, HighLevelError, TimeoutError):
        return cleared, None
    if contact is None:
        new = context.reply is None and recipient.kind is not RecipientKind.CONTACT_ID
        return dataclasses.replace(cleared, new_contact=new), None
    return await with_contact(deps, cleared, contact, location_id)


async def enrich_composer(
    deps: Deps,
    client: AsyncWebClient,
    opened: OpenedComposer,
    draft: Draft,
    context: ComposeContext,
    origin: SlackOrigin,
    *,
    sub_accounts: tuple[SubAccountOption, ...] = (),
) -> None:
    """After opening: the contact looked up (channels narrowed, appointments offered) and
    the preview shown when a signature or merge fields change the message."""
    known = context
    if context.reply is not None or (draft.recipient and not sub_accounts):
        known, history = await look_up(deps, draft, context, origin)
        last = history.last_inbound if history is not None else None
        if context.reply is not None and last is not None and last in (known.available or ()):
            draft = dataclasses.replace(draft, channel=last)  # answer where they wrote
    shown, note, quiet, default_from = await extras(
        deps, draft, known, origin, seconds=LOOKUP_SECONDS
    )
    if known == context and shown is None and note is None and quiet is None and not default_from:
        return  # nothing to add to what is on screen
    view = compose_view(
        draft,
        known,
        now=time.time(),
        sub_accounts=sub_accounts,
        preview=shown,
        preview_note=note,
        quiet=quiet,
        default_from=default_from,
    )
    try:
        # With the opening hash: if the person changed something meanwhile, their update
        # (which looks the contact up itself) stands and this one is dropped.
        await client.views_update(view_id=opened.view_id, hash=opened.hash, view=view)
    except SlackApiError as exc:
        log.debug("could not fill in the composer: %s", exc.response.get("error"))
