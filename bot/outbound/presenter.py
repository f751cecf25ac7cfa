"""SendPresenter: the Slack post of a send (a thread root for the first) and its status."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Hashable
from dataclasses import replace
from typing import Protocol

from bot.outbound.entry import Display, files_of, is_purged, unpack_entry
from bot.posting.errors import SlackPostError, cannot_look, passing_failure
from bot.posting.marks import PostMark
from bot.posting.poster import SlackPosters
from bot.tenancy.accounts import SubAccounts
from bot.ui.thread_builder import PostStatus, SendPost
from storage import OutboxEntry, Store, ThreadRecord

log = logging.getLogger(__name__)


class SendOutcomeObserver(Protocol):
    """Told how each attempt at a send ended (metrics): one of SEND_OUTCOMES."""

    def send_outcome(self, outcome: str) -> None: ...


SEND_OUTCOMES = (
    "sent",  # HighLevel took it (scheduled ones too)
    "found_by_reconciliation",  # its answer was lost, but the conversation shows it
    "failed",  # HighLevel refused it, or the stored request could not be read
    "unknown",  # no answer, and not found in the conversation: a person decides
    "retried",  # not sent yet (429, no connection): tried again later
    "cancelled",  # a scheduled send cancelled by a person
)


def thread_mark(thread: ThreadRecord) -> str:
    """What a thread's root post is marked as the root of (`PostMark.root_of`)."""
    return f"{thread.location_id}:thread:{thread.id}"


def send_mark(entry: OutboxEntry) -> str:
    """What the post showing a send is marked with (`PostMark.key`)."""
    return f"{entry.location_id}:outbox:{entry.id}"


def _root_pending_key(thread_id: int) -> str:
    return f"slack-root-pending:{thread_id}"


class KeyedLocks:
    """One asyncio lock per key, forgotten once nobody holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[Hashable, asyncio.Lock] = {}
        self._users: dict[Hashable, int] = {}

    @contextlib.asynccontextmanager
    async def hold(self, key: Hashable) -> AsyncIterator[None]:
        lock = self._locks.setdefault(key, asyncio.Lock())
        self._users[key] = self._users.get(key, 0) + 1
        try:
            async with lock:
                yield
        finally:
            self._users[key] -= 1
            if not self._users[key]:
                del self._users[key], self._locks[key]


class SendPresenter:
    """Shows a send in Slack: its post (the thread root for a conversation's first send) and
    each status change. Rendering is the builders' job; this decides what and where."""

    def __init__(
        self,
        *,
        store: Store,
        slack: SlackPosters,
        outcomes: SendOutcomeObserver | None = None,
        accounts: SubAccounts | None = None,
    ) -> None:
        self._store = store
        # Each workspace's poster: a send is shown in the workspace it came from.
        self._slack = slack
        self._outcomes = outcomes
        # Names the sub-account on thread roots when several are connected.
        self._accounts = accounts
        # One status change of a send is shown at a time: the outbox worker and the inbound
        # worker (HighLevel's status webhooks) both show sends, and two first posts of one send
        # racing each other would leave it shown twice.
        self._showing = KeyedLocks()
        # One post at a time may start a thread: see `thread_root`.
        self._rooting = KeyedLocks()

    def thread_root(self, thread_id: int) -> contextlib.AbstractAsyncContextManager[None]:
        """Held while deciding whether a post starts the thread, posting it and recording it.

        The outbox worker (a send) and the inbound worker (the customer's message) may both
        find a thread without a root; whoever comes second must see the first one's root and
        reply under it, or the conversation would be split over two threads.
        """
        return self._rooting.hold(thread_id)

    # ------------------------------------------------------------ posts made but not recorded
    #
    # A post is made, then its ts recorded: a crash (or Slack failing after the fact) in between
    # leaves a post the database does not know. Whoever may be in that case looks for the post
    # by its mark before posting: an item whose earlier attempt got as far as posting, and
    # anyone about to post the root of a thread whose root an earlier attempt may have posted
    # (noted durably before each root is posted). A first attempt posts directly.

    async def find_earlier(
        self, thread: ThreadRecord, key: str, *, since: float
    ) -> tuple[ThreadRecord, str | None]:
        """Under `thread_root(thread.id)`: the ts of an earlier attempt's post marked `key`, if
        it made one (None if not, or if this app may not look). A root of the thread found on
        the way is recorded as the thread's root. `since`: when that attempt began, at the
        earliest."""
        try:
            poster = await self._slack.poster(thread.team_id)
            if thread.thread_ts is not None:
                found = await poster.find(
                    thread.channel_id, key=key, thread_ts=thread.thread_ts, since=since
                )
                return thread, found.ts if found is not None else None
            found = await poster.find(
                thread.channel_id,
                key=key,
                root_of=thread_mark(thread),
                since=min(since, thread.created_at),
            )
        except SlackPostError as exc:
            if not cannot_look(exc):
                raise
            log.warning(
                "could not look in %s for a post an interrupted attempt may have made (%s);"
                " posting it again, so it may show twice: grant the app the history scopes in"
                " manifest.yml",
                thread.channel_id,
                exc.error,
            )
            return thread, None
        if found is None:
            return thread, None
        if found.root_of == thread_mark(thread):
            thread = await self.root_posted(thread, found.ts)
        return thread, found.ts if found.key == key else None

    async def prepare_root(self, thread: ThreadRecord, *, looked: bool = False) -> ThreadRecord:
        """Under `thread_root(thread.id)`, before posting the root of a thread that has none.

        If an earlier attempt was about to post one (noted in the store), it may have: look for
        it and, if found, record it (the caller then replies under it). Otherwise note that a
        root is being posted. `looked`: the caller has just looked for this thread's root.
        """
        pending = _root_pending_key(thread.id)
        if looked or await self._store.kv_get(pending) is None:
            await self._store.kv_set(pending, repr(time.time()))
            return thread
        try:
            poster = await self._slack.poster(thread.team_id)
            found = await poster.find(
                thread.channel_id, root_of=thread_mark(thread), since=thread.created_at
            )
        except SlackPostError as exc:
            if not cannot_look(exc):
                raise
            log.warning(
                "could not look in %s for a thread root an interrupted attempt may have posted"
                " (%s): grant the app the history scopes in manifest.yml",
                thread.channel_id,
                exc.error,
            )
            return thread
        if found is None:
            return thread
        log.info("thread %d: its root was posted before a stop; using it", thread.id)
        return await self.root_posted(thread, found.ts)

    async def current(self, thread: ThreadRecord) -> ThreadRecord:
        """`thread` with its root as recorded now: a thread's root, once recorded, never
        changes (set_thread_ts keeps the first), so only one without is read again."""
        if thread.thread_ts is not None:
            return thread
        return await self._store.get_thread(thread.id) or thread

    async def root_posted(self, thread: ThreadRecord, ts: str) -> ThreadRecord:
        """Record `ts` as the thread's root (the first one recorded wins)."""
        thread = await self._store.set_thread_ts(thread.id, ts)
        await self._store.kv_delete(_root_pending_key(thread.id))
        return thread

    async def account_label(self, location_id: str) -> str | None:
        """The sub-account's name for a thread root: only when more than one is connected."""
        if self._accounts is None or not location_id:
            return None
        if len(await self._accounts.connected()) <= 1:
            return None
        return self._accounts.label(location_id)

    # ------------------------------------------------------------ a send's post

    async def show_sending(
        self, entry: OutboxEntry, thread: ThreadRecord | None, display: Display
    ) -> tuple[ThreadRecord | None, OutboxEntry]:
        """Make sure the send has its Slack post (the thread root if it is the first) before
        HighLevel hears of it, so a crash mid-send still leaves something a person can see."""
        if entry.slack_ts is not None or thread is None:
            return thread, entry
        async with self.thread_root(thread.id):
            thread = await self.current(thread)
            try:
                # Only a claim after the first can follow an attempt that posted and stopped.
                thread, ts = await self._post_once(
                    entry, display, PostStatus.SENDING, thread, may_exist=entry.attempts > 1
                )
            except SlackPostError as exc:
                log.warning(
                    "outbox %d: could not post to Slack (%s); sending anyway", entry.id, exc.error
                )
                return thread, entry
            entry = await self._store.set_outbox_slack_ts(entry.id, ts)
        return thread, entry

    async def _post_once(
        self,
        entry: OutboxEntry,
        display: Display,
        status: PostStatus,
        thread: ThreadRecord,
        *,
        may_exist: bool,
        error: str | None = None,
    ) -> tuple[ThreadRecord, str]:
        """Under `thread_root(thread.id)`, for a send without a recorded post: its post (the
        thread's root if the thread has none). `may_exist`: an earlier attempt may have made
        it; it is then looked for first, and updated if found."""
        key = send_mark(entry)
        looked = False
        if may_exist:
            thread, ts = await self.find_earlier(thread, key, since=entry.created_at)
            looked = True
            if ts is not None:
                log.info("outbox %d: its post was made before a stop; using it", entry.id)
                as_root = ts == thread.thread_ts
                post = self.post(
                    entry,
                    display,
                    status,
                    thread=thread,
                    error=error,
                    account=await self.account_label(entry.location_id) if as_root else None,
                )
                poster = await self._slack.poster(entry.team_id)
                await poster.show_send(
                    entry.channel_id, post, thread_ts=None, ts=ts, as_root=as_root
                )
                return thread, ts
        as_root = thread.thread_ts is None
        if as_root:
            thread = await self.prepare_root(thread, looked=looked)
            as_root = thread.thread_ts is None
        post = self.post(
            entry,
            display,
            status,
            thread=thread,
            error=error,
            account=await self.account_label(entry.location_id) if as_root else None,
        )
        poster = await self._slack.poster(entry.team_id)
        ts = await poster.show_send(
            entry.channel_id,
            post,
            thread_ts=thread.thread_ts,
            as_root=as_root,
            mark=PostMark(key, root_of=thread_mark(thread) if as_root else None),
        )
        if as_root:
            thread = await self.root_posted(thread, ts)
        return thread, ts

    def post(
        self,
        entry: OutboxEntry,
        display: Display,
        status: PostStatus,
        *,
        thread: ThreadRecord | None,
        error: str | None = None,
        account: str | None = None,
    ) -> SendPost:
        request, _ = unpack_entry(entry)
        return SendPost(
            outbox_id=entry.id,
            sender_user_id=entry.slack_user_id,
            channel=request.type,
            contact_label=display.contact_label,
            contact_address=display.contact_address,
            text=request.message or "",
            status=status,
            subject=request.subject,
            error=error,
            scheduled_at=int(entry.scheduled_at) if entry.scheduled_at else None,
            cc=tuple(request.email_cc or ()),
            thread_id=thread.id if thread is not None else None,
            created_contact=display.created_contact,
            account=account,
            files=files_of(entry),
            note=entry.ghl_msg,
        )

    async def show(
        self,
        entry: OutboxEntry,
        status: PostStatus,
        *,
        thread: ThreadRecord | None = None,
        display: Display | None = None,
        error: str | None = None,
    ) -> bool:
        """Update the send's Slack post (or post it, if posting failed earlier).

        False when Slack could not show it now but may later (no answer, its own failure or
        rate limit; logged here): a caller that can try again later (an inbound event) does;
        the others leave the post as it was. True otherwise, also when Slack refused it for
        good (a deleted post, a workspace gone): trying again would fail the same way.
        """
        if status is PostStatus.CANCELLED and self._outcomes is not None:
            # Only a person's cancel, once the store marked the entry cancelled, shows this.
            self._outcomes.send_outcome("cancelled")
        if is_purged(entry):
            # Its text is purged (MESSAGE_RETENTION_DAYS): shown again, the post would lose it.
            log.debug("outbox %d: purged; its post is left as it is", entry.id)
            return True
        async with self._showing.hold(entry.id):
            thread_id = entry.thread_id or (thread.id if thread is not None else None)
            if thread_id is None:
                return await self._show(entry, status, thread=thread, display=display, error=error)
            async with self.thread_root(thread_id):
                return await self._show(entry, status, thread=thread, display=display, error=error)

    async def _show(
        self,
        entry: OutboxEntry,
        status: PostStatus,
        *,
        thread: ThreadRecord | None,
        display: Display | None,
        error: str | None,
    ) -> bool:
        display = display or unpack_entry(entry)[1]
        # The post (and the thread root) may have been made since the caller read them. Each
        # is recorded once and never changes after: only one not known yet is looked for.
        if entry.slack_ts is None:
            current = await self._store.get_outbox(entry.id)
            if current is not None:
                entry = replace(entry, slack_ts=current.slack_ts, attempts=current.attempts)
        if entry.thread_id is not None:
            if thread is None or thread.id != entry.thread_id:
                thread = await self._store.get_thread(entry.thread_id) or thread
            elif thread.thread_ts is None:
                thread = await self.current(thread)
        if entry.slack_ts is None and thread is not None:
            # No post recorded: once claimed, the send's first post may have been made and
            # not recorded (a stop, or Slack failing after the fact).
            try:
                thread, ts = await self._post_once(
                    entry, display, status, thread, may_exist=entry.attempts >= 1, error=error
                )
            except SlackPostError as exc:
                log.warning("outbox %d: could not show it in Slack (%s)", entry.id, exc.error)
                return not passing_failure(exc)
            await self._store.set_outbox_slack_ts(entry.id, ts)
            return True
        # Here the send has a post to update, or no thread at all (never claimed).
        as_root = thread is not None and entry.slack_ts == thread.thread_ts
        post = self.post(
            entry,
            display,
            status,
            thread=thread,
            error=error,
            account=await self.account_label(entry.location_id) if as_root else None,
        )
        try:
            poster = await self._slack.poster(entry.team_id)
            ts = await poster.show_send(
                entry.channel_id,
                post,
                thread_ts=None if as_root else (thread.thread_ts if thread else None),
                ts=entry.slack_ts,
                as_root=as_root,
                mark=PostMark(send_mark(entry)),
            )
        except SlackPostError as exc:
            log.warning("outbox %d: could not show its status in Slack (%s)", entry.id, exc.error)
            return not passing_failure(exc)
        if entry.slack_ts is None:
            await self._store.set_outbox_slack_ts(entry.id, ts)
        return True
