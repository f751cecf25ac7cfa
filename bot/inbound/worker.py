"""InboundWorker: shows stored HighLevel events in Slack, in order per conversation."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import replace

from bot.compose import contact_address, contact_label
from bot.files.inbound import MEDIA_CHECK_EVENT, FileTarget, InboundFiles
from bot.highlevel import HighLevelError, MessageChannel
from bot.inbound.messages import (
    IncomingMessage,
    channel_type,
    inbound_post,
    newer_than_thread,
    stored_message,
)
from bot.inbox.waiting import UNREAD_EVENT, ConversationMarks
from bot.outbound.presenter import KeyedLocks, SendPresenter, thread_mark
from bot.posting.errors import SlackPostError, WorkspaceGone
from bot.posting.marks import PostMark
from bot.posting.poster import SlackPosters
from bot.tenancy.accounts import SubAccounts
from bot.tenancy.routing import ChannelRouting
from bot.ui.inbound_builder import InboundPost, status_reaction
from bot.ui.thread_builder import PostStatus
from bot.workers import QueueLooks, QueueSlots
from storage import (
    InboundEvent,
    MessageDirection,
    MessageRecord,
    OutboxState,
    Store,
    StoreError,
    ThreadRecord,
)

log = logging.getLogger(__name__)

DEDUPE_TTL_SECONDS = 14 * 86_400
# An echo of our own send may arrive before the send's answer is recorded; wait for it.
ECHO_WAIT_SECONDS = 1.0
ECHO_WAIT_ATTEMPTS = 10
MAX_ATTEMPTS = 8
MESSAGE_EVENTS = frozenset({"InboundMessage", "OutboundMessage"})
_STATUS_SHOWN = {
    "delivered": PostStatus.DELIVERED,
    "read": PostStatus.READ,
    "opened": PostStatus.READ,
    "failed": PostStatus.FAILED,
    "undelivered": PostStatus.FAILED,
}
# How far along a message is: a status update that would move it back (a late "sent" after
# "delivered") is not taken.
_STATUS_PROGRESS = {
    "pending": 0,
    "queued": 0,
    "scheduled": 0,
    "sent": 1,
    "delivered": 2,
    "read": 3,
    "opened": 3,
    "clicked": 3,
}


def message_mark(location_id: str, key_id: str) -> str:
    """What the post showing a HighLevel message is marked with (`PostMark.key`)."""
    return f"{location_id}:message:{key_id}"


class InboundWorker:
    """Shows stored events in Slack, in order per conversation; retries what Slack refuses."""

    name = "inbound"

    def __init__(
        self,
        *,
        store: Store,
        slack: SlackPosters,
        presenter: SendPresenter,
        accounts: SubAccounts,
        routing: ChannelRouting,
        files: InboundFiles | None = None,
        marks: ConversationMarks | None = None,
        concurrency: int = 4,
        idle_poll_seconds: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """`files`: copies customers' attachments into their threads (None: they are shown
        as links only)."""
        self._store = store
        self._files = files
        # Waiting/unread/star on thread roots (None: not kept).
        self._marks = marks
        self._slack = slack
        self._presenter = presenter
        self._accounts = accounts
        self._routing = routing
        self._clock = clock
        # One event of a message is processed at a time: two events for one message (status
        # updates, one without conversationId) may be claimed together, and only one may post.
        self._showing = KeyedLocks()
        looks = QueueLooks(self._store.claim_inbound_or_due, self._store.next_inbound_due_at)
        self._slots = QueueSlots(
            "inbound",
            claim=looks.claim,
            handle=self._handle,
            next_due=looks.next_due,
            concurrency=concurrency,
            idle_poll=idle_poll_seconds,
            clock=clock,
        )

    def wake(self) -> None:
        """New work is queued: stop waiting."""
        self._slots.wake()

    async def run(self, stopping: asyncio.Event) -> None:
        if not self._store.shared:
            # Alone on its database; with several instances, LeaseKeeper takes over only
            # the events whose holder's lease expired.
            recovered = await self._store.recover_inbound()
            if recovered:
                log.info(
                    "%d inbound events were interrupted by a stop; processing them again",
                    recovered,
                )
        await self._slots.run(stopping)

    async def _handle(self, event: InboundEvent) -> None:
        try:
            if event.event_type == MEDIA_CHECK_EVENT:
                done = await self._check_late_media(event)
            elif event.event_type == UNREAD_EVENT:
                done = self._marks is None or await self._marks.unread_update(event)
            else:
                message = stored_message(event.event_type, event.payload_json)
                if message is None:
                    # Checked when it was stored; a body that says otherwise now is kept aside.
                    raise ValueError("the stored webhook is not about a message")
                if not message.location_id:
                    # Stored before events kept their sub-account: the key starts with it.
                    location_id = event.conversation_key.split(":", 1)[0]
                    message = replace(message, location_id=location_id)
                done = await self._process(message, event)
        except WorkspaceGone as exc:
            # Its workspace uninstalled the app: nothing of it can be shown any more.
            log.warning(
                "inbound event %d dropped: the Slack workspace %s is gone (%s)",
                event.id,
                exc.team_id or "of the default inbox",
                exc.error,
            )
            await self._store.fail_inbound(event.id, f"Slack workspace gone: {exc.error}")
            return
        except (SlackPostError, HighLevelError) as exc:
            reason = getattr(exc, "error", None) or getattr(exc, "message", None) or str(exc)
            if event.attempts >= MAX_ATTEMPTS:
                log.warning(
                    "inbound event %d given up after %d attempts: %s",
                    event.id,
                    event.attempts,
                    reason,
                )
                await self._store.fail_inbound(event.id, str(reason))
                return
            wait = min(60.0, 2.0**event.attempts)
            log.info("inbound event %d: %s; retrying in %.0f s", event.id, reason, wait)
            await self._store.retry_inbound(
                event.id, next_attempt_at=self._clock() + wait, error=str(reason)
            )
            return
        except StoreError:
            raise  # the worker restarts, and the event is taken again from the database
        except Exception as exc:
            # A bug meeting one event must not stop every event after it (the worker would
            # restart, take the same event, and crash again): keep it as failed, for a person
            # to look at with the traceback logged here.
            log.exception("inbound event %d could not be shown; set aside as failed", event.id)
            await self._store.fail_inbound(event.id, f"internal error: {type(exc).__name__}")
            return
        if done:
            await self._store.finish_inbound(event.id)

    async def _process(self, message: IncomingMessage, event: InboundEvent) -> bool:
        """True: the event is done, for the caller to finish; False: how it ended (or when it
        is tried again) is written already."""
        async with self._showing.hold(message.key_id):
            known = await self._store.get_message_by_ghl_id(message.key_id)
            if known is not None and (known.slack_ts is not None or known.outbox_id is not None):
                await self._update_status(known, message, retried=event.attempts > 1)
                await self._files_of_shown(known, message)
                return True
            if (
                message.direction == "outbound"
                and known is None
                and event.attempts < ECHO_WAIT_ATTEMPTS
                and await self._own_send_pending(message)
            ):
                # Probably our own send, whose answer is not recorded yet: look again shortly.
                await self._store.retry_inbound(
                    event.id,
                    next_attempt_at=self._clock() + ECHO_WAIT_SECONDS,
                    error="waiting for our own send to be recorded",
                )
                return False
            # Finished with its post when nothing of it was left to do after that.
            return not await self._show(message, event)

    async def _own_send_pending(self, message: IncomingMessage) -> bool:
        return await self._store.has_unsettled_send(_location(message), message.contact_id)

    async def _update_status(
        self, known: MessageRecord, message: IncomingMessage, *, retried: bool
    ) -> None:
        status = (message.status or "").lower()
        before = (known.status or "").lower()
        if not status:
            return
        shown = _STATUS_SHOWN.get(status)
        # Recorded already: by an earlier attempt of this event, which may have stopped (Slack
        # failing, a crash) before the send's post showed it. Only a retried event shows it
        # again; an update of the post is the same whichever attempt lands.
        recorded = status == before
        if recorded and not (retried and known.outbox_id is not None and shown is not None):
            return
        if _STATUS_PROGRESS.get(status, 99) < _STATUS_PROGRESS.get(before, -1):
            return  # arrived late: the message is further along already
        if known.outbox_id is not None and shown is not None:
            entry = await self._store.update_status_of_send(message.key_id, status)
            if entry is None or entry.state is OutboxState.CANCELLED:
                return
            error = None
            if shown is PostStatus.FAILED:
                error = message.error or f"HighLevel reports the message {status}"
                if entry.state is not OutboxState.FAILED:
                    entry = await self._store.mark_failed(entry.id, error)
            if not await self._presenter.show(entry, shown, error=error):
                # Recorded, not shown: the event is tried again (see `recorded` above).
                raise SlackPostError("the send's post could not be updated")
            return
        await self._store.update_message_status(message.key_id, status)
        reaction = status_reaction(status)
        if reaction and known.slack_channel_id and known.slack_ts:
            thread = await self._store.get_thread(known.thread_id) if known.thread_id else None
            poster = await self._slack.poster(thread.team_id if thread is not None else None)
            await poster.react(known.slack_channel_id, known.slack_ts, reaction)

    async def _show(self, message: IncomingMessage, event: InboundEvent) -> bool:
        """Post the message in its thread; True when that also finished `event`."""
        thread = await self._thread_for(message)
        if thread is None:
            log.warning(
                "a HighLevel message for contact %s has no Slack thread and SLACK_INBOX_CHANNEL is"
                " not set; it is not shown in Slack",
                message.contact_id,
            )
            return False
        record, created = await self._store.record_message(
            direction=MessageDirection(
                message.direction if message.direction in ("inbound", "outbound") else "inbound"
            ),
            thread_id=thread.id,
            ghl_message_id=message.key_id,
            ghl_email_message_id=message.email_message_id,
            email_thread_id=message.email_thread_id,
            message_type=channel_type(message.channel) or message.channel,
            status=message.status,
            slack_channel_id=None,
            slack_ts=None,
            slack_user_id=None,
            outbox_id=None,
        )
        if (
            record.slack_ts is not None
            or record.outbox_id is not None
            or (
                # Only a message from before the thread can have been shown as history.
                not newer_than_thread(message, thread.created_at)
                and await self._store.shown_as_history(
                    thread.id, (message.key_id, message.email_message_id or "")
                )
            )
        ):
            # Shown already (or it is one of our sends, or "Earlier messages" showed it): this
            # event only updates its status.
            await self._update_status(record, message, retried=event.attempts > 1)
            await self._files_of_shown(record, message)
            return False
        post = inbound_post(
            message, thread.contact_label or message.contact_id, thread_id=thread.id
        )
        key = message_mark(_location(message), message.key_id)
        async with self._presenter.thread_root(thread.id):
            # A send may have started this thread since it was looked up.
            thread = await self._presenter.current(thread)
            ts: str | None = None
            if not created:
                # An earlier attempt (this event's or another's for the same message) got as
                # far as posting, and may have posted before it was cut short: look first.
                thread, ts = await self._presenter.find_earlier(
                    thread, key, since=record.created_at
                )
                if ts is not None:
                    log.info("a message's post was made before a stop; using it")
            if ts is None:
                as_root = thread.thread_ts is None
                if as_root:
                    thread = await self._presenter.prepare_root(thread, looked=not created)
                    as_root = thread.thread_ts is None
                if as_root:
                    post = await self._with_contact(post, message)
                    if len(await self._accounts.connected()) > 1:
                        # Several sub-accounts: the root says whose conversation it is.
                        post = replace(post, account=self._accounts.label(_location(message)))
                poster = await self._slack.poster(thread.team_id)
                ts = await poster.show_inbound(
                    thread.channel_id,
                    post,
                    thread_ts=thread.thread_ts,
                    mark=PostMark(key, root_of=thread_mark(thread) if as_root else None),
                )
                if as_root:
                    thread = await self._presenter.root_posted(thread, ts)
        # The post, what the thread learnt, the wait (a customer waits, or someone in
        # HighLevel answered) and, unless files follow, the event's end: one write.
        finishes = None if self._files_to_take(message) else event.id
        change = await self._store.record_shown(
            record.id,
            slack_channel_id=thread.channel_id,
            slack_ts=ts,
            thread_id=thread.id,
            waiting=(
                None
                if self._marks is None
                else self._marks.waiting_of(message.direction, message.date_added)
            ),
            finishes=finishes,
            **_learnt(message),
        )
        if self._marks is not None:
            await self._marks.waiting_written(change)
        if finishes is not None:
            return True
        # The files after the post, before the event is finished: in order in the thread.
        await self._take_files(
            message,
            FileTarget(
                location_id=_location(message),
                key_id=message.key_id,
                message_id=message.message_id,
                team_id=thread.team_id,
                channel_id=thread.channel_id,
                thread_ts=thread.thread_ts or ts,
            ),
        )
        return False

    def _files_to_take(self, message: IncomingMessage) -> bool:
        """Whether `_take_files` has anything to do for the message."""
        return (
            self._files is not None
            and message.direction == "inbound"
            and (bool(message.attachments) or _late_media_expected(message))
        )

    async def _take_files(self, message: IncomingMessage, target: FileTarget) -> None:
        """A customer's attachments into the thread (each once), or, for WhatsApp media that
        HighLevel does not list yet, checks for them in the next minute."""
        if self._files is None or not self._files_to_take(message):
            return
        if message.attachments:
            await self._files.copy(target, message.attachments)
        elif _late_media_expected(message):
            await self._files.expect_late_media(target)

    async def _files_of_shown(self, known: MessageRecord, message: IncomingMessage) -> None:
        """Another event of a message shown already (a redelivery, a status, the event again
        after a stop between its post and its files): the files not copied yet, if any."""
        if (
            self._files is None
            or message.direction != "inbound"
            or known.outbox_id is not None
            or known.slack_ts is None
            or known.slack_channel_id is None
            or known.thread_id is None
            or not (message.attachments or _late_media_expected(message))
        ):
            return
        thread = await self._store.get_thread(known.thread_id)
        if thread is None:
            return
        target = FileTarget(
            location_id=_location(message),
            key_id=message.key_id,
            message_id=message.message_id,
            team_id=thread.team_id,
            channel_id=known.slack_channel_id,
            thread_ts=thread.thread_ts or known.slack_ts,
        )
        await self._take_files(message, target)

    async def _check_late_media(self, event: InboundEvent) -> bool:
        if self._files is None:
            return True  # the bridge no longer copies files: nothing to check for
        # Not while another event of the same message is at work here (its files too).
        async with self._showing.hold(str(event.payload.get("key_id") or "")):
            return await self._files.check_late_media(event)

    async def _with_contact(self, post: InboundPost, message: IncomingMessage) -> InboundPost:
        try:
            contact = await self._accounts.contacts(_location(message)).get(message.contact_id)
        except (LookupError, HighLevelError):
            return post
        channel = channel_type(message.channel)
        address = contact_address(contact, MessageChannel(channel)) if channel else contact.phone
        return replace(post, contact_label=contact_label(contact), contact_address=address)

    async def _default_team(self) -> str:
        """The workspace of the default inbox (SLACK_INBOX_CHANNEL): SLACK_BOT_TOKEN's."""
        return await (await self._slack.poster(None)).team_id()

    async def _thread_for(self, message: IncomingMessage) -> ThreadRecord | None:
        """The conversation's most recently active thread, else a new one in the inbox channel."""
        location_id = _location(message)
        if message.conversation_id:
            threads = await self._store.find_threads_for_conversation(
                location_id, message.conversation_id
            )
            if threads:
                return threads[0]
        threads = await self._store.find_threads_for_contact(location_id, message.contact_id)
        if threads:
            return threads[0]
        inbox = await self._routing.inbox(location_id)
        if inbox is None:
            return None
        label = message.contact_id
        with contextlib.suppress(LookupError, HighLevelError):
            label = contact_label(
                await self._accounts.contacts(location_id).get(message.contact_id)
            )
        return await self._store.upsert_thread(
            team_id=inbox.team_id or await self._default_team(),
            channel_id=inbox.channel_id,
            location_id=location_id,
            contact_id=message.contact_id,
            conversation_id=message.conversation_id,
            channel_type=channel_type(message.channel),
            contact_label=label,
        )


def _learnt(message: IncomingMessage) -> dict[str, str]:
    """What the thread learns from a message shown in it: the conversation, the customer's
    last channel, the email thread and its subject."""
    channel = channel_type(message.channel)
    return {
        **({"conversation_id": message.conversation_id} if message.conversation_id else {}),
        **({"channel_type": channel} if channel and message.direction == "inbound" else {}),
        **({"email_thread_id": message.email_thread_id} if message.email_thread_id else {}),
        **({"subject": message.subject} if message.is_email and message.subject else {}),
    }


def _late_media_expected(message: IncomingMessage) -> bool:
    """A WhatsApp message from the customer with neither text nor attachments: media whose
    attachments HighLevel lists only seconds later (HLD#299)."""
    return (
        message.direction == "inbound"
        and channel_type(message.channel) == MessageChannel.WHATSAPP.value
        and not message.body.strip()
        and not message.attachments
    )


def _location(message: IncomingMessage) -> str:
    """The message's sub-account (set from the event's key when the payload lacked it)."""
    return message.location_id or ""
