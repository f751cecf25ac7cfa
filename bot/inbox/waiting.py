"""ConversationMarks: a conversation's state on its thread root, kept in the store and shown
with reactions.

- A customer message marks the thread waiting (`waiting_of`, written with its post by
  `Store.record_shown`; then `waiting_written`): `waiting_since` is the first
  message not answered yet, and the root shows WAITING_REACTION.
- An answer (a send from Slack, confirmed sent; a message sent from HighLevel's app or by a
  workflow, mirrored) ends the wait (`answered`).
- Unread and starred come from the conversation menu and from HighLevel's
  ConversationUnreadUpdate webhook (`unread_update`), stored as the inbound queue stores any
  event (so each is processed once, in order with the contact's messages).

Only the write that changed the state changes the root: two instances, or an event told
twice, add or remove a reaction once. A reaction Slack already has (or no longer has) is fine.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from slack_sdk.errors import SlackApiError

from bot.highlevel import HighLevelError
from bot.posting.errors import SlackPostError
from bot.posting.poster import SlackPosters
from bot.tenancy.accounts import SubAccounts
from bot.ui.assign_builder import (
    STARRED_REACTION,
    UNREAD_REACTION,
    WAITING_REACTION,
    marks_shown,
)
from storage import InboundEvent, Store
from storage._inbox import ConversationState, StateChange, WaitingChange

log = logging.getLogger(__name__)

# HighLevel's webhook when a conversation's unread status changes (see
# docs/webhook-events/ConversationUnreadWebhook.md).
UNREAD_EVENT = "ConversationUnreadUpdate"
# Slack's answers that mean the reaction is already as wanted.
_ALREADY = frozenset({"already_reacted", "no_reaction"})


@dataclass(frozen=True, slots=True)
class UnreadUpdate:
    """A ConversationUnreadUpdate webhook's body, as far as the bridge needs it."""

    location_id: str
    conversation_id: str
    contact_id: str
    unread_count: int | None
    starred: bool | None
    at: float | None


def unread_update_from(payload: Mapping[str, Any]) -> UnreadUpdate | None:
    """The update a webhook body tells of; None when it names no location, conversation and
    contact (a field of the wrong type counts as absent)."""
    location_id, conversation_id, contact_id = (
        payload.get("locationId"),
        payload.get("id"),
        payload.get("contactId"),
    )
    if not all(isinstance(v, str) and v for v in (location_id, conversation_id, contact_id)):
        return None
    count = payload.get("unreadCount")
    unread: int | None = None
    if isinstance(count, int | float) and not isinstance(count, bool) and count >= 0:
        unread = int(count)
    starred = payload.get("starred")
    return UnreadUpdate(
        location_id=str(location_id),
        conversation_id=str(conversation_id),
        contact_id=str(contact_id),
        unread_count=unread,
        starred=starred if isinstance(starred, bool) else None,
        at=_timestamp(payload.get("timestamp")),
    )


def _timestamp(value: object) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


class ConversationMarks:
    """Keeps each thread's conversation state, and its root's reactions, right."""

    def __init__(
        self,
        *,
        store: Store,
        slack: SlackPosters,
        accounts: SubAccounts | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """`accounts`: where a ConversationUnreadUpdate's conversation is read back from
        (None: the webhook's own values are taken)."""
        self._store = store
        self._slack = slack
        self._accounts = accounts
        self._clock = clock
        # Told the workspace of each thread that starts or stops waiting (the Home tab).
        self.on_waiting_changed: Callable[[str], None] | None = None

    async def answered(self, thread_id: int) -> None:
        """Someone answered the customer in this thread's conversation."""
        await self.waiting_written(await self._store.clear_waiting(thread_id))

    def waiting_of(self, direction: str, at: float | None) -> WaitingChange:
        """What a message shown in its thread does to the wait, for `Store.record_shown`
        (which writes it with the post): from the customer (sent at `at`, else now), it
        starts; any other, an answer, ends it. Then `waiting_written` with the outcome."""
        if direction == "inbound":
            return WaitingChange.customer_wrote(at if at is not None else self._clock())
        return WaitingChange.answered()

    async def waiting_written(self, change: StateChange | None) -> None:
        """The root follows a wait that a write started or ended."""
        if change is not None and change.changed:
            self._waiting_changed(change.state)
            await self._show_quietly(change.state, (WAITING_REACTION,))

    def _waiting_changed(self, state: ConversationState) -> None:
        if self.on_waiting_changed is not None:
            self.on_waiting_changed(state.team_id)

    async def set_flags(
        self, thread_id: int, *, unread_count: int | None = None, starred: bool | None = None
    ) -> ConversationState | None:
        """The unread count and/or star as HighLevel now has them; the root follows."""
        change = await self._store.set_conversation_flags(
            thread_id, unread_count=unread_count, starred=starred
        )
        if change is None:
            return None
        if change.changed:
            await self.show(change.state, (UNREAD_REACTION, STARRED_REACTION))
        return change.state

    async def unread_update(self, event: InboundEvent) -> bool:
        """A stored ConversationUnreadUpdate: every thread of the conversation (one per
        channel) takes its unread count and star. True: done with the event."""
        update = unread_update_from(event.payload)
        if update is None:
            return True  # checked when it was stored
        update = await self._current(update)
        threads = await self._store.find_threads_for_conversation(
            update.location_id, update.conversation_id
        ) or await self._store.find_threads_for_contact(update.location_id, update.contact_id)
        for thread in threads:
            change = await self._store.set_conversation_flags(
                thread.id, unread_count=update.unread_count, starred=update.starred
            )
            if change is not None and change.changed:
                await self._show_quietly(change.state, (UNREAD_REACTION, STARRED_REACTION))
        return True

    async def _current(self, update: UnreadUpdate) -> UnreadUpdate:
        """The conversation's unread count and star as HighLevel has them now.

        HighLevel's ConversationUnreadUpdate carries no time, and two sent moments apart may
        arrive the other way round: each is taken as "it changed", and the conversation is
        read back, so the last one processed leaves the state HighLevel has. When it cannot
        be read, the webhook's values are taken."""
        if self._accounts is None:
            return update
        try:
            now = await self._accounts.client(update.location_id).get_conversation(
                update.conversation_id
            )
        except (HighLevelError, LookupError) as exc:
            log.info(
                "%s for %s: reading the conversation back failed (%s); taking the webhook's",
                UNREAD_EVENT,
                update.conversation_id,
                type(exc).__name__,
            )
            return update
        return dataclasses.replace(
            update,
            unread_count=now.unread_count if now.unread_count is not None else update.unread_count,
            starred=now.starred if now.starred is not None else update.starred,
        )

    async def _show_quietly(self, state: ConversationState, names: tuple[str, ...]) -> None:
        """`show`, where a Slack failure must not undo what was done (the state is stored; a
        send or a message is shown): it is logged, and the root's reaction stays behind."""
        try:
            await self.show(state, names)
        except SlackPostError as exc:
            log.warning(
                "thread %d: could not update the root's reactions: %s", state.thread_id, exc
            )
        except Exception:  # a lost connection, a timeout: still never undoes a send
            log.warning(
                "thread %d: could not update the root's reactions", state.thread_id, exc_info=True
            )

    async def show(self, state: ConversationState, names: tuple[str, ...]) -> None:
        """Make the root's reactions `names` say `state` (a root not posted yet shows none)."""
        if state.thread_ts is None:
            return
        wanted = marks_shown(waiting=state.waiting, unread=state.unread, starred=state.starred)
        poster = await self._slack.poster(state.team_id)
        for name in names:
            try:
                if name in wanted:
                    await poster.react(state.channel_id, state.thread_ts, name)
                else:
                    await poster.client.reactions_remove(
                        channel=state.channel_id, timestamp=state.thread_ts, name=name
                    )
            except SlackApiError as exc:
                error = str(exc.response.get("error") or "")
                if error not in _ALREADY:
                    raise SlackPostError(error or "unknown") from exc
