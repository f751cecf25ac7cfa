"""ConversationActions: the conversation menu on a thread root (read, unread, star, unstar,
assign), carried out at HighLevel and shown on the root.

Every action looks the thread up again by the id its menu carries and refuses one of another
workspace (or, for a click, of another channel): a forged or stale value finds nothing of
its own. Each answers with a short text for the clicker, or raises ActionRefused with what
went wrong in words a person can act on — never a stack trace.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, Final

from slack_sdk.errors import SlackApiError

from bot.highlevel import HighLevelError, HighLevelUser
from bot.inbox.waiting import ConversationMarks
from bot.posting.errors import SlackPostError
from bot.posting.poster import SlackPosters
from bot.tenancy.accounts import SubAccounts
from bot.ui.assign_builder import DONE_TEXT, Assignee, assigned_line
from storage import Store, StoreError, ThreadRecord

log = logging.getLogger(__name__)

# What each flag verb sets at HighLevel: (unreadCount, starred).
FLAG_VERBS: Final[dict[str, tuple[int | None, bool | None]]] = {
    "read": (0, None),
    "unread": (1, None),
    "star": (None, True),
    "unstar": (None, False),
}
ASSIGN_VERB: Final = "assign"
NOT_HERE: Final = "This menu is not linked to a conversation of this channel and workspace."


class ActionRefused(Exception):
    """The action was not carried out: `title` says so in a sentence, `detail` why."""

    def __init__(self, title: str, detail: str) -> None:
        super().__init__(title)
        self.title = title
        self.detail = detail


@dataclass(frozen=True, slots=True)
class AssignForm:
    """What the Assign modal offers: the contact, the sub-account's users, and the one whose
    email is the clicker's Slack email (None: nobody matches)."""

    thread_id: int
    contact_label: str
    assignees: tuple[Assignee, ...]
    default: str | None


class ConversationActions:
    """The conversation menu's actions."""

    def __init__(
        self,
        *,
        store: Store,
        accounts: SubAccounts,
        slack: SlackPosters,
        marks: ConversationMarks,
    ) -> None:
        self._store = store
        self._accounts = accounts
        self._slack = slack
        self._marks = marks

    async def flag(self, verb: str, thread_id: int, *, team_id: str, channel_id: str) -> str:
        """read / unread / star / unstar: PUT /conversations/{id}, then the store and the
        root's reactions. Returns the confirmation."""
        if verb not in FLAG_VERBS:
            raise ActionRefused("Can't do that here", NOT_HERE)
        unread_count, starred = FLAG_VERBS[verb]
        thread = await self.thread_for(thread_id, team_id=team_id, channel_id=channel_id)
        if not thread.conversation_id:
            raise ActionRefused(
                "This thread has no HighLevel conversation yet",
                "It gets one with the first message sent or received in it; try again then.",
            )
        try:
            await self._accounts.client(thread.location_id).update_conversation(
                thread.conversation_id, unread_count=unread_count, starred=starred
            )
        except HighLevelError as exc:
            log.info("conversation menu %s on thread %d: HighLevel refused it", verb, thread.id)
            raise ActionRefused("HighLevel refused it", exc.message) from exc
        try:
            await self._marks.set_flags(thread.id, unread_count=unread_count, starred=starred)
        except SlackPostError as exc:
            # Done at HighLevel and stored; only the root's reaction is behind.
            log.warning("thread %d: could not update the root's reactions: %s", thread.id, exc)
        return DONE_TEXT[verb]

    async def assign_form(self, thread: ThreadRecord, *, user_id: str) -> AssignForm:
        """What the Assign modal offers for `thread` (see `thread_for`): HighLevel's users,
        the clicker's match preselected."""
        team_id = thread.team_id
        users, email = await asyncio.gather(
            self._users(thread), self._slack_email(team_id, user_id)
        )
        if not users:
            raise ActionRefused(
                "Nobody to assign to", "The HighLevel sub-account has no users to assign to."
            )
        default = None
        if email:
            default = next(
                (u.id for u in users if u.email and u.email.casefold() == email.casefold()), None
            )
        return AssignForm(
            thread_id=thread.id,
            contact_label=thread.contact_label or thread.contact_id,
            assignees=tuple(Assignee(user_id=u.id, label=u.label) for u in users),
            default=default,
        )

    async def assign(self, thread_id: int, assignee_id: str, *, team_id: str, user_id: str) -> str:
        """PUT /contacts/{id} with assignedTo, then the line in the thread. Returns the
        assignee's name."""
        thread = await self.thread_for(thread_id, team_id=team_id, channel_id=None)
        users = await self._users(thread)
        user = next((u for u in users if u.id == assignee_id), None)
        if user is None:
            raise ActionRefused(
                "Couldn't assign the conversation",
                "That person is not a user of the HighLevel sub-account (any more).",
            )
        try:
            await self._accounts.client(thread.location_id).assign_contact(
                thread.contact_id, user.id
            )
        except HighLevelError as exc:
            log.info("assign on thread %d: HighLevel refused it", thread.id)
            raise ActionRefused("HighLevel refused the assignment", exc.message) from exc
        await self._store.set_assigned_to(thread.id, user.id)
        if thread.thread_ts is not None:
            line = assigned_line(user.label, user_id)
            poster = await self._slack.poster(thread.team_id)
            try:
                await poster.post(thread.channel_id, line, [], thread_ts=thread.thread_ts)
            except SlackPostError as exc:
                log.warning("thread %d: could not post the assignment: %s", thread.id, exc)
        return user.label

    async def thread_for(
        self, thread_id: int, *, team_id: str, channel_id: str | None
    ) -> ThreadRecord:
        """The thread, if it is this workspace's (and, given a channel, that channel's) and its
        sub-account is connected; else ActionRefused."""
        try:
            thread = await self._store.get_thread(thread_id)
        except StoreError as exc:
            raise ActionRefused("The bridge's database did not answer", "Try again.") from exc
        if (
            thread is None
            or thread.team_id != team_id
            or (channel_id is not None and thread.channel_id != channel_id)
        ):
            if thread is not None:
                log.warning(
                    "conversation menu: thread %d refused to workspace %s (not its own)",
                    thread_id,
                    team_id,
                )
            raise ActionRefused("Can't do that here", NOT_HERE)
        if await self._accounts.get(thread.location_id) is None:
            raise ActionRefused(
                "The HighLevel sub-account is disconnected",
                "An admin can connect it again (`/highlevel status` says how).",
            )
        return thread

    async def _users(self, thread: ThreadRecord) -> list[HighLevelUser]:
        try:
            return await self._accounts.client(thread.location_id).list_users()
        except HighLevelError as exc:
            raise ActionRefused("Couldn't read the sub-account's users", exc.message) from exc

    async def _slack_email(self, team_id: str, user_id: str) -> str | None:
        """The person's Slack email (users.info; needs users:read.email), None if unknown."""
        try:
            client = (await self._slack.poster(team_id)).client
            user: dict[str, Any] = (await client.users_info(user=user_id)).get("user") or {}
        except (SlackApiError, SlackPostError) as exc:
            log.info("no Slack email for the assign default: %s", exc)
            return None
        profile = user.get("profile") or {}
        email = profile.get("email")
        return email if isinstance(email, str) and email else None
