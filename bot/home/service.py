"""HomeTab: the App Home of each person, and the contact search that opens threads from it.

A person sees the sub-accounts their workspace may work with: with several workspaces
(`ChannelRouting.per_workspace`) those the workspace owns, and those no workspace owns yet that
one of its channels is linked to; with one workspace every connected sub-account (one Private
Integration Token is one sub-account). Every read is scoped by the workspace and by those
sub-accounts, so one tenant's conversations never show to another's people.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.compose import contact_label
from bot.compose.assist import ComposeAssist
from bot.highlevel import HighLevelError
from bot.home.publisher import DEFAULT_INTERVAL_SECONDS, HomePublisher, RateLimited
from bot.inbound.messages import stored_message
from bot.outbound.presenter import SendPresenter, thread_mark
from bot.posting.errors import SlackPostError, WorkspaceGone
from bot.posting.marks import PostMark
from bot.posting.pacing import slack_retry_after
from bot.posting.poster import SlackPosters
from bot.settings import listed
from bot.tenancy.accounts import SubAccounts
from bot.tenancy.routing import ChannelRouting
from bot.ui.home_builder import (
    ContactHit,
    HomeAccount,
    HomeConversation,
    HomePage,
    OpenedThread,
    SearchState,
    home_view,
    opened_root,
)
from storage import LocationRecord, Store, ThreadRecord
from storage._home import WaitingThread

log = logging.getLogger(__name__)

# The oldest conversations shown per sub-account (the Home tab holds 100 blocks in all).
SHOWN_PER_ACCOUNT = 15
# Someone who opened their Home tab this recently sees it kept up to date: a conversation
# that starts or stops waiting in their workspace publishes it again (paced as any publish).
VIEWER_SECONDS = 30 * 60
VIEWERS_KEPT = 1_000
# Permalinks never change: each is asked for once, then kept (at most this many).
PERMALINKS_KEPT = 5_000
PERMALINK_LOOKUPS_AT_ONCE = 8


class HomeTab:
    """Builds and publishes Home tabs; searches contacts and opens their threads."""

    def __init__(
        self,
        *,
        store: Store,
        accounts: SubAccounts,
        routing: ChannelRouting,
        slack: SlackPosters,
        presenter: SendPresenter,
        assist: ComposeAssist,
        allowed_users: frozenset[str] = frozenset(),
        connect_hint: str | None = None,
        interval: float = DEFAULT_INTERVAL_SECONDS,
        track: Callable[[asyncio.Task[Any]], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._accounts = accounts
        self._routing = routing
        self._slack = slack
        self._presenter = presenter
        self._assist = assist
        self._allowed_users = allowed_users
        self._connect_hint = connect_hint
        self._clock = clock
        self._permalinks: OrderedDict[tuple[str, str, str], str] = OrderedDict()
        # (team, user) -> when they last opened their Home tab, oldest first.
        self._viewers: OrderedDict[tuple[str, str], float] = OrderedDict()
        self._publisher = HomePublisher(self.publish_now, interval=interval, track=track)

    # ------------------------------------------------------------------ the Home tab

    def refresh(self, team_id: str, user_id: str) -> None:
        """Publish the person's Home tab soon, coalesced and paced (see HomePublisher); the
        person is then kept up to date for VIEWER_SECONDS (`waiting_changed`)."""
        if team_id and user_id:
            self._viewers[(team_id, user_id)] = self._clock()
            self._viewers.move_to_end((team_id, user_id))
            while len(self._viewers) > VIEWERS_KEPT:
                self._viewers.popitem(last=False)
            self._publisher.request(team_id, user_id)

    def waiting_changed(self, team_id: str) -> None:
        """A conversation of `team_id` started or stopped waiting: the Home tabs its people
        opened lately are published again (per instance: those opened on this one)."""
        since = self._clock() - VIEWER_SECONDS
        for (team, user), opened in list(self._viewers.items()):
            if opened < since:
                del self._viewers[(team, user)]
            elif team == team_id:
                self._publisher.request(team, user)

    async def publish_now(self, team_id: str, user_id: str) -> None:
        """Build the person's Home tab from the store now and publish it. RateLimited when
        Slack says so; another refusal is logged (with its code only)."""
        try:
            poster = await self._slack.poster(team_id)
        except WorkspaceGone:
            log.info("no Home tab for %s: the app is not installed in %s", user_id, team_id)
            return
        page = await self.page(team_id, user_id, poster.client)
        try:
            await poster.client.views_publish(user_id=user_id, view=home_view(page))
        except SlackApiError as exc:
            wait = slack_retry_after(exc)
            if wait is not None:
                raise RateLimited(wait) from exc
            log.warning("views.publish for %s refused: %s", user_id, _code(exc))

    async def page(self, team_id: str, user_id: str, client: AsyncWebClient) -> HomePage:
        """What the person's Home tab shows now."""
        now = self._clock()
        if self._allowed_users and not listed(self._allowed_users, team_id, user_id):
            return HomePage((), now, allowed=False)
        accounts = await self.visible(team_id)
        waiting = await self._store.waiting_threads(
            team_id, [a.location_id for a in accounts], per_location=SHOWN_PER_ACCOUNT
        )
        links = await self._links(client, team_id, [(w.channel_id, w.thread_ts) for w in waiting])
        shown: list[HomeAccount] = []
        for account in accounts:
            mine = [w for w in waiting if w.location_id == account.location_id]
            shown.append(
                HomeAccount(
                    location_id=account.location_id,
                    name=account.name or account.location_id,
                    waiting=tuple(
                        _conversation(w, links.get((w.channel_id, w.thread_ts))) for w in mine
                    ),
                    waiting_count=mine[0].waiting_count if mine else 0,
                )
            )
        if self._connect_hint:
            return HomePage(tuple(shown), now, connect_hint=self._connect_hint)
        return HomePage(tuple(shown), now)

    async def visible(self, team_id: str) -> list[LocationRecord]:
        """The connected sub-accounts people of `team_id` may see (module docstring), by name."""
        connected = await self._accounts.connected()
        if not self._routing.per_workspace:
            return connected
        linked = {
            link.location_id
            for link in await self._store.list_channel_links()
            if link.team_id == team_id
        }
        return [
            record
            for record in connected
            if record.slack_team_id == team_id
            or (record.slack_team_id is None and record.location_id in linked)
        ]

    async def may_see(self, team_id: str, location_id: str | None) -> LocationRecord | None:
        """The sub-account, if people of `team_id` may see it (a form's value can be forged)."""
        if not location_id:
            return None
        return next((r for r in await self.visible(team_id) if r.location_id == location_id), None)

    # ------------------------------------------------------------------ permalinks

    async def _links(
        self, client: AsyncWebClient, team_id: str, messages: Sequence[tuple[str, str]]
    ) -> dict[tuple[str, str], str]:
        gate = asyncio.Semaphore(PERMALINK_LOOKUPS_AT_ONCE)

        async def one(channel_id: str, ts: str) -> tuple[tuple[str, str], str | None]:
            async with gate:
                return (channel_id, ts), await self.permalink(client, team_id, channel_id, ts)

        found = await asyncio.gather(*(one(c, ts) for c, ts in dict.fromkeys(messages)))
        return {key: link for key, link in found if link is not None}

    async def permalink(
        self, client: AsyncWebClient, team_id: str, channel_id: str, ts: str
    ) -> str | None:
        """A link to the message (chat.getPermalink, asked once); None when Slack gave none."""
        key = (team_id, channel_id, ts)
        known = self._permalinks.get(key)
        if known is not None:
            self._permalinks.move_to_end(key)
            return known
        try:
            response = await client.chat_getPermalink(channel=channel_id, message_ts=ts)
        except SlackApiError as exc:
            log.info("chat.getPermalink in %s: %s", channel_id, _code(exc))
            return None
        link = response.get("permalink")
        if not isinstance(link, str) or not link:
            return None
        self._permalinks[key] = link
        while len(self._permalinks) > PERMALINKS_KEPT:
            self._permalinks.popitem(last=False)
        return link

    # ------------------------------------------------------------------ the contact search

    async def search_start(self, team_id: str, location_id: str | None) -> SearchState | None:
        """The empty search modal of the sub-account; None when the person may not see it."""
        record = await self.may_see(team_id, location_id)
        if record is None:
            return None
        return SearchState(record.location_id, record.name or record.location_id)

    async def search(self, team_id: str, location_id: str | None, query: str) -> SearchState:
        """The sub-account's contacts matching `query` (name, phone, email): the composer's
        cached search."""
        record = await self.may_see(team_id, location_id)
        if record is None:
            return SearchState(location_id or "", "", query, problem=_NOT_YOURS)
        state = SearchState(record.location_id, record.name or record.location_id, query)
        try:
            found = await self._assist.search(record.location_id, query)
        except HighLevelError as exc:
            return _with(state, problem=f"HighLevel did not answer the search: {exc.message}")
        hits = tuple(
            ContactHit(c.id, contact_label(c), phone=c.phone, email=c.email) for c in found
        )
        return _with(state, results=hits)

    async def open_contact(
        self, team_id: str, user_id: str, location_id: str | None, contact_id: str, query: str
    ) -> SearchState:
        """The contact's thread in this workspace, or a new one (its root posted in the
        sub-account's inbox, else a channel linked to it), as the search modal shows it."""
        record = await self.may_see(team_id, location_id)
        if record is None:
            return SearchState(location_id or "", "", query, problem=_NOT_YOURS)
        state = SearchState(record.location_id, record.name or record.location_id, query)
        if query.strip():
            state = await self.search(team_id, record.location_id, query)
        try:
            contact = await self._accounts.contacts(record.location_id).get(contact_id)
        except LookupError:
            return _with(state, problem="That contact is not in this sub-account (any more).")
        except HighLevelError as exc:
            return _with(state, problem=f"HighLevel did not answer: {exc.message}")
        if contact.location_id and contact.location_id != record.location_id:
            return _with(state, problem="That contact is not in this sub-account.")
        label = contact_label(contact)
        try:
            poster = await self._slack.poster(team_id)
            thread = await self._existing(team_id, record.location_id, contact.id)
            created = False
            if thread is None:
                channel = await self._place(team_id, record.location_id)
                if channel is None:
                    return _with(state, problem=_NOWHERE)
                thread, created = await self._root(
                    team_id, channel, record.location_id, contact.id, label, contact, user_id
                )
        except SlackPostError as exc:
            log.info("a thread opened from the Home tab could not be posted: %s", exc.error)
            return _with(state, problem=_post_problem(exc.error))
        assert thread.thread_ts is not None  # noqa: S101 - both paths give a posted root
        link = await self.permalink(poster.client, team_id, thread.channel_id, thread.thread_ts)
        opened = OpenedThread(label, thread.channel_id, link, created)
        return _with(state, opened=opened)

    async def _existing(
        self, team_id: str, location_id: str, contact_id: str
    ) -> ThreadRecord | None:
        """The contact's thread in this workspace (one with its root posted): in the
        sub-account's inbox or a channel linked to it first, else the most recent."""
        threads = [
            t
            for t in await self._store.find_threads_for_contact(location_id, contact_id)
            if t.team_id == team_id and t.thread_ts is not None
        ]
        places = set(await self._places(team_id, location_id))
        preferred = [t for t in threads if t.channel_id in places]
        found = preferred or threads
        return found[0] if found else None

    async def _places(self, team_id: str, location_id: str) -> list[str]:
        """The channels of `team_id` the sub-account's threads open in: its inbox, then the
        channels linked to it."""
        places: list[str] = []
        inbox = await self._routing.inbox(location_id)
        if inbox is not None:
            inbox_team = inbox.team_id or await (await self._slack.poster(None)).team_id()
            if inbox_team == team_id:
                places.append(inbox.channel_id)
        for link in await self._store.list_channel_links(location_id=location_id):
            if link.team_id == team_id and link.channel_id not in places:
                places.append(link.channel_id)
        return places

    async def _place(self, team_id: str, location_id: str) -> str | None:
        places = await self._places(team_id, location_id)
        return places[0] if places else None

    async def _root(
        self,
        team_id: str,
        channel_id: str,
        location_id: str,
        contact_id: str,
        label: str,
        contact: Any,
        user_id: str,
    ) -> tuple[ThreadRecord, bool]:
        """The contact's thread in `channel_id`, its root posted now if it has none."""
        thread = await self._store.upsert_thread(
            team_id=team_id,
            channel_id=channel_id,
            location_id=location_id,
            contact_id=contact_id,
            contact_label=label,
        )
        async with self._presenter.thread_root(thread.id):
            thread = await self._presenter.current(thread)
            if thread.thread_ts is None:
                thread = await self._presenter.prepare_root(thread)
            if thread.thread_ts is not None:
                return thread, False  # a send or a customer's message rooted it meanwhile
            text, blocks = opened_root(
                contact=label,
                address=contact.phone or contact.email,
                account=await self._presenter.account_label(location_id),
                opened_by=user_id,
                thread_id=thread.id,
            )
            poster = await self._slack.poster(team_id)
            ts = await poster.post(
                channel_id,
                text,
                blocks,
                mark=PostMark(f"{location_id}:home:{thread.id}", root_of=thread_mark(thread)),
            )
            return await self._presenter.root_posted(thread, ts), True


_NOT_YOURS = "This sub-account is not one this workspace works with."
_NOWHERE = (
    "There is no channel to open the thread in: an admin can make one the sub-account's inbox"
    " with `/highlevel inbox`, or link one with `/highlevel link`."
)


def _post_problem(error: str) -> str:
    if error in ("not_in_channel", "channel_not_found"):
        return "I'm not in the sub-account's channel: `/invite` me there, then try again."
    return f"Slack did not take the thread's first post ({error}). Try again."


def _with(state: SearchState, **changes: Any) -> SearchState:
    values = {name: getattr(state, name) for name in state.__dataclass_fields__}
    return SearchState(**(values | changes))


def _conversation(waiting: WaitingThread, permalink: str | None) -> HomeConversation:
    preview, removed, via = _last_message(waiting)
    return HomeConversation(
        thread_id=waiting.thread_id,
        contact=waiting.contact_label or waiting.contact_id,
        channel_id=waiting.channel_id,
        waiting_since=waiting.waiting_since,
        permalink=permalink,
        preview=preview,
        removed=removed,
        message_channel=via,
    )


def _last_message(waiting: WaitingThread) -> tuple[str | None, bool, str | None]:
    """(text, purged, channel) of the contact's newest message stored."""
    payload, event_type = waiting.last_payload, waiting.last_event_type
    if payload is None or event_type is None:
        return None, False, None
    try:
        data = json.loads(payload)
        if isinstance(data, dict) and data.get("purged") is True:
            return None, True, None
        message = stored_message(event_type, payload)
    except (ValueError, TypeError):
        return None, False, None
    if message is None:
        return None, False, None
    text = message.body
    if message.is_email and message.subject:
        text = f"{message.subject} — {text}" if text else message.subject
    return text, False, message.channel or None


def _code(exc: SlackApiError) -> str:
    data = exc.response.data if exc.response is not None else None
    return str(data.get("error", "unknown_error")) if isinstance(data, dict) else "unknown_error"
