"""ConversationHistory: "Earlier messages" on a thread root posts the conversation's history.

A click pages back through HighLevel's GET /conversations/{id}/messages (newest first, on with
`lastMessageId`) from where the thread's last click stopped, takes the next PAGE_SIZE messages
the thread does not show yet, and posts them into the thread oldest first, marked as history.
Not shown again: a message the bridge posted or sent in the thread (the `messages` table),
one shown as history before (`thread_history`), and one newer than the thread itself (the
live path shows those). Each email of an email thread is one message here, as it is live.

Once across clicks and instances: a click holds the thread's history with a lease
(`claim_history`, renewed at each post) so another click, anywhere, is told to wait instead
of posting the same page; and each message is claimed in `thread_history` just before its
post, by one caller only. A post Slack refused is given back, so a later click shows it.
Errors (HighLevel's rate limit, its 5xx, a disconnected sub-account, Slack) end the click with
an outcome saying so, and leave the cursor where it was.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from slack_sdk.models.blocks import Block

from bot.highlevel import (
    AccessLostError,
    AuthError,
    HighLevelClient,
    HighLevelError,
    Message,
    NotFoundError,
    RateLimitedError,
    ServerError,
    UnavailableError,
)
from bot.inbound.messages import IncomingMessage, from_polled, inbound_post, newer_than_thread
from bot.posting.errors import SlackPostError
from bot.posting.marks import PostMark
from bot.posting.poster import SlackPosters
from bot.tenancy.accounts import SubAccounts
from bot.ui.history_builder import (
    HistoryProblem,
    history_busy_notice,
    history_post,
    history_problem_notice,
    no_earlier_notice,
    nothing_new_yet_notice,
)
from storage import HistoryLease, Store, ThreadRecord

log = logging.getLogger(__name__)

# Messages posted per click, and asked of HighLevel per page (its default page size).
PAGE_SIZE = 20
# Pages one click reads at most while looking for messages the thread does not show yet.
MAX_PAGES_PER_CLICK = 5
# How long a click holds a thread's history without renewing it (it renews at each post).
LEASE_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class HistoryOutcome:
    """What one click did: `posted` messages; `done` when nothing earlier is left; `busy` when
    another click holds the thread's history; `problem` when it could not (finish)."""

    posted: int = 0
    done: bool = False
    busy: bool = False
    looked_at: int = 0
    problem: HistoryProblem | None = None
    retry_after: float | None = None
    detail: str | None = None


def outcome_notice(outcome: HistoryOutcome) -> tuple[str, list[Block]] | None:
    """The ephemeral notice the clicker gets for `outcome`; None when the posts say it all."""
    if outcome.problem is not None:
        return history_problem_notice(
            outcome.problem,
            retry_after=outcome.retry_after,
            detail=outcome.detail,
            posted=outcome.posted,
        )
    if outcome.busy:
        return history_busy_notice()
    if outcome.posted:
        return None
    if outcome.done:
        return no_earlier_notice()
    return nothing_new_yet_notice(outcome.looked_at)


def history_mark(location_id: str, thread_id: int, key: str) -> str:
    """What the post showing `key` as history in a thread is marked with (`PostMark.key`)."""
    return f"{location_id}:history:{thread_id}:{key}"


@dataclass(frozen=True, slots=True)
class _Earlier:
    """One message to show as history: its key in `thread_history` (the email id for an
    email, else the message id), its other ids, and what it says."""

    key: str
    also: tuple[str, ...]
    message: IncomingMessage


@dataclass(frozen=True, slots=True)
class _Batch:
    earlier: list[_Earlier]  # oldest first
    cursor: str | None  # the last message looked at: the next click goes on after it
    done: bool
    looked_at: int


@dataclass(slots=True)
class _Held:
    """The lease a click holds right now (renewed at each post); None when it has none."""

    lease: HistoryLease | None


class _Failed(Exception):
    def __init__(self, outcome: HistoryOutcome) -> None:
        super().__init__(outcome.problem)
        self.outcome = outcome


class ConversationHistory:
    """Posts a conversation's earlier messages into its Slack thread, a page per click."""

    def __init__(
        self,
        *,
        store: Store,
        accounts: SubAccounts,
        slack: SlackPosters,
        page_size: int = PAGE_SIZE,
        max_pages: int = MAX_PAGES_PER_CLICK,
        lease_seconds: float = LEASE_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._accounts = accounts
        self._slack = slack
        self._page_size = page_size
        self._max_pages = max_pages
        self._lease_seconds = lease_seconds
        self._clock = clock

    async def show_earlier(self, thread_id: int, *, team_id: str | None) -> HistoryOutcome:
        """The next page of the thread's history, posted into it (a click, from workspace
        `team_id`: a thread of another workspace is not found)."""
        thread = await self._store.get_thread(thread_id)
        if (
            thread is None
            or thread.thread_ts is None
            or (team_id is not None and thread.team_id != team_id)
        ):
            return HistoryOutcome(problem=HistoryProblem.UNKNOWN_THREAD)
        if await self._accounts.get(thread.location_id) is None:
            return HistoryOutcome(problem=HistoryProblem.DISCONNECTED)
        lease = await self._store.claim_history(thread.id, seconds=self._lease_seconds)
        if lease is None:
            state = await self._store.history_state(thread.id)
            if state is None:
                return HistoryOutcome(problem=HistoryProblem.UNKNOWN_THREAD)
            return HistoryOutcome(done=True) if state.done else HistoryOutcome(busy=True)
        held = _Held(lease)
        try:
            return await self._click(thread, held)
        finally:
            if held.lease is not None:  # not finished: free it, the cursor where it was
                await self._store.release_history(held.lease)

    async def _click(self, thread: ThreadRecord, held: _Held) -> HistoryOutcome:
        """One click, holding `held.lease` (None once it is finished, or lost)."""
        assert held.lease is not None  # noqa: S101 - show_earlier's claim
        try:
            batch = await self._collect(thread, held.lease.cursor)
        except _Failed as failed:
            return failed.outcome
        posted = 0
        for earlier in batch.earlier:
            held.lease = await self._store.renew_history(held.lease, seconds=self._lease_seconds)
            if held.lease is None:
                # Held too long (a stall): another click has it now and goes on from the
                # same cursor; what this one posted is in thread_history, so not again.
                log.warning("thread %d: the earlier messages' lease ran out; stopping", thread.id)
                return HistoryOutcome(posted=posted)
            try:
                if await self._post(thread, earlier):
                    posted += 1
            except SlackPostError as exc:
                log.warning("thread %d: an earlier message was not posted: %s", thread.id, exc)
                return HistoryOutcome(
                    posted=posted, problem=HistoryProblem.SLACK_FAILED, detail=exc.error
                )
        lease, held.lease = held.lease, None
        if not await self._store.finish_history(lease, cursor=batch.cursor, done=batch.done):
            return HistoryOutcome(posted=posted)
        log.info(
            "thread %d: %d earlier messages posted%s",
            thread.id,
            posted,
            " (the start of the conversation)" if batch.done else "",
        )
        return HistoryOutcome(posted=posted, done=batch.done, looked_at=batch.looked_at)

    async def _post(self, thread: ThreadRecord, earlier: _Earlier) -> bool:
        """Post one message as history, if no other caller does or did; False if not ours."""
        if not await self._store.claim_history_message(thread.id, earlier.key, also=earlier.also):
            return False
        message = earlier.message
        post = inbound_post(message, thread.contact_label or thread.contact_id)
        text, blocks = history_post(post)
        mark = PostMark(history_mark(thread.location_id, thread.id, earlier.key))
        try:
            poster = await self._slack.poster(thread.team_id)
            await poster.post(
                thread.channel_id, text, blocks, thread_ts=thread.thread_ts, mark=mark
            )
        except SlackPostError as exc:
            if exc.error != "no_answer":
                # Certainly not posted: a later click shows it. (No answer at all: it may be
                # in the thread, so it stays claimed rather than risk showing it twice.)
                await self._store.unclaim_history_message(thread.id, earlier.key)
            raise
        return True

    async def _collect(self, thread: ThreadRecord, cursor: str | None) -> _Batch:
        """The next PAGE_SIZE messages the thread does not show, from `cursor` back."""
        try:
            client = self._accounts.client(thread.location_id)
            conversation_id = thread.conversation_id or await self._conversation_of(client, thread)
            if conversation_id is None:
                raise _Failed(HistoryOutcome(problem=HistoryProblem.NO_CONVERSATION))
            return await self._page_back(client, thread, conversation_id, cursor)
        except LookupError as exc:  # no client: the sub-account is gone
            raise _Failed(HistoryOutcome(problem=HistoryProblem.DISCONNECTED)) from exc
        except HighLevelError as exc:
            log.warning(
                "thread %d: HighLevel's history could not be read: %s",
                thread.id,
                type(exc).__name__,
            )
            raise _Failed(_problem(exc)) from exc

    async def _page_back(
        self,
        client: HighLevelClient,
        thread: ThreadRecord,
        conversation_id: str,
        cursor: str | None,
    ) -> _Batch:
        shown = set(await self._store.shown_in_thread(thread.id))
        found: list[list[_Earlier]] = []  # per listed message, newest first
        looked_at = 0
        for _ in range(self._max_pages):
            page = await client.list_messages(
                conversation_id, last_message_id=cursor, limit=self._page_size
            )
            if not page.messages:
                return _batch(found, cursor, done=True, looked_at=looked_at)
            for index, message in enumerate(page.messages):
                looked_at += 1
                cursor = message.id
                earlier = await self._earlier(client, thread, message, shown)
                if earlier:
                    found.append(earlier)
                if len(found) >= self._page_size:
                    at_end = index == len(page.messages) - 1 and not page.next_page
                    return _batch(found, cursor, done=at_end, looked_at=looked_at)
            if not page.next_page:
                return _batch(found, cursor, done=True, looked_at=looked_at)
        return _batch(found, cursor, done=False, looked_at=looked_at)

    async def _earlier(
        self, client: HighLevelClient, thread: ThreadRecord, message: Message, shown: set[str]
    ) -> list[_Earlier]:
        """What of a listed message to show as history: nothing (shown already, newer than the
        thread, an activity rather than a message), itself, or its emails not shown yet."""
        if (message.message_type or "").upper().startswith("TYPE_ACTIVITY"):
            return []
        location_id = thread.location_id
        email_ids = message.meta.email.message_ids if message.meta and message.meta.email else []
        if not email_ids:
            incoming = from_polled(message, location_id=location_id)
            if message.id in shown or newer_than_thread(incoming, thread.created_at):
                return []
            shown.add(message.id)
            return [_Earlier(key=message.id, also=(), message=incoming)]
        found: list[_Earlier] = []
        for email_id in email_ids:
            if email_id in shown:
                continue
            email = await client.get_email(email_id)
            incoming = from_polled(message, email, location_id=location_id)
            if newer_than_thread(incoming, thread.created_at):
                continue
            shown.add(email_id)
            found.append(_Earlier(key=email_id, also=(), message=incoming))
        return found

    async def _conversation_of(self, client: HighLevelClient, thread: ThreadRecord) -> str | None:
        """The contact's conversation, for a thread that has not learnt it (a send's)."""
        search = await client.search_conversations(contact_id=thread.contact_id, limit=1)
        return search.conversations[0].id if search.conversations else None


def _batch(
    found: list[list[_Earlier]], cursor: str | None, *, done: bool, looked_at: int
) -> _Batch:
    # Listed newest first; posted oldest first (emails of one thread by their own dates).
    earlier = [item for group in reversed(found) for item in group]
    earlier.sort(key=lambda e: -math.inf if e.message.date_added is None else e.message.date_added)
    return _Batch(earlier=earlier, cursor=cursor, done=done, looked_at=looked_at)


def _problem(exc: HighLevelError) -> HistoryOutcome:
    """A HighLevel failure as the clicker is told of it."""
    problem = HistoryProblem.REFUSED
    retry_after: float | None = None
    if isinstance(exc, AccessLostError):
        problem = HistoryProblem.DISCONNECTED
    elif isinstance(exc, AuthError):
        problem = HistoryProblem.REFUSED
    elif isinstance(exc, RateLimitedError):
        problem, retry_after = HistoryProblem.RATE_LIMITED, exc.retry_after or None
    elif isinstance(exc, ServerError):
        problem = HistoryProblem.HIGHLEVEL_FAILED
    elif isinstance(exc, UnavailableError):
        problem = HistoryProblem.UNREACHABLE
    elif isinstance(exc, NotFoundError):
        problem = HistoryProblem.NO_CONVERSATION
    return HistoryOutcome(problem=problem, retry_after=retry_after, detail=str(exc))
