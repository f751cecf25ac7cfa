"""Compose intents: a send a person asked for is saved before Slack is told "ok", then finished.

Slack's answer to a slash command or a modal submission (the ack) tells the person their send
was taken, and the work after it (the contact lookup at HighLevel, then the outbox entry) takes
seconds. A stop or a crash in those seconds would lose a send the person believes is on its
way. So before the ack one small insert saves what was asked (`ComposeIntents.record`); the
outbox entry's transaction closes it (same idempotency key), and so does telling the person
why it cannot be sent. At start-up `IntentRecovery` finishes every intent an earlier process
left open, through the same steps, and tells the person the outcome.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from slack_sdk.models.blocks import Block
from slack_sdk.webhook.async_client import AsyncWebhookClient

from bot.compose import Draft, FieldErrors, ReplyContext, check_draft, contact_label
from bot.highlevel import Contact, EmailReplyMode
from bot.outbound.finishing import QuietHoursError
from bot.outbound.saved_draft import decode_draft, encode_draft, optional_text, text_field
from bot.outbound.service import OutboundService
from bot.outbound.submission import (
    NOT_SAVED,
    ComposeRejected,
    NotInChannelError,
    NotSavedError,
    SlackOrigin,
)
from bot.ui.notice_builder import error_notice, not_in_channel_notice, queued_notice
from bot.ui.quick_send_builder import quiet_hours_notice
from storage import ComposeIntent, Store, StoreError

log = logging.getLogger(__name__)

# Slack accepts posts to a response_url for 30 minutes; an older intent's person is told with
# chat.postEphemeral instead (a few minutes' margin for the clocks and the request itself).
RESPONSE_URL_FRESH_SECONDS = 25 * 60
# How long telling the person through a response_url may take before an ephemeral is used.
RESPOND_TIMEOUT_SECONDS = 10.0
# A send cut off this long ago is not sent after a restart: "running 10 min late" hours later
# would do more harm than good. The person is told, and can send it again.
STALE_AFTER_SECONDS = 3600.0
# Outcomes an intent is closed with (INTENT_QUEUED, when its outbox entry is written, is the
# store's).
REFUSED = "refused"
HELD = "held"  # waiting for the person's choice; a button runs it again under a new key
STALE = "stale"
UNREADABLE = "unreadable"
FAILED = "failed"
# The intent could not be closed after a refusal for want of a database: it stays open, so the
# next start runs it again, and the person must not be told to send it again meanwhile.
KEPT_FOR_RESTART = (
    "The bridge could not save it (its database is busy or unavailable). Nothing has been sent "
    "yet; it will be finished, or you will be told here why not, when the bridge restarts. "
    "Please don't send it again meanwhile."
)


class IntentKind(enum.StrEnum):
    QUICK_SEND = "quick_send"  # /sendsms <recipient> <message>
    COMPOSER = "composer"  # the composer modal's submission


@dataclass(frozen=True, slots=True)
class Notice:
    """What the person is told: fallback text and blocks, from the builders in `bot.ui`."""

    text: str
    blocks: list[Block] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class QuickSendIntent:
    key: str
    origin: SlackOrigin
    draft: Draft
    response_url: str | None = None


@dataclass(frozen=True, slots=True)
class ComposerIntent:
    key: str
    origin: SlackOrigin
    draft: Draft
    reply: ReplyContext | None = None


Intent = QuickSendIntent | ComposerIntent


class Recording:
    """The intent's insert: done within the ack's budget (saved or refused), or still going."""

    def __init__(self, task: asyncio.Future[None]) -> None:
        self._task = task

    @property
    def refused(self) -> bool:
        """It failed before the ack: tell Slack plainly that nothing was taken."""
        return self._task.done() and (self._task.cancelled() or self._task.exception() is not None)

    async def saved(self) -> bool:
        """Wait for the insert (after the ack, when the database was slow); False if refused."""
        try:
            await self._task
        except NotSavedError:
            return False
        return True


class ComposeIntents:
    """Saves a compose before its ack and runs it to its outbox entry, or to a refusal."""

    def __init__(
        self,
        *,
        store: Store,
        outbound: OutboundService,
        region: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._outbound = outbound
        self._region = region
        self._clock = clock

    async def record(self, intent: Intent, *, wait: float) -> Recording:
        """Start saving `intent` and wait up to `wait` s for it (normally a millisecond).

        A database slower than that (locked by another process, say) must not make Slack's
        3 s window pass: the caller acks anyway and learns the outcome from `saved()`. Cutting
        the insert short instead could not tell whether its COMMIT had happened.
        """
        task = asyncio.ensure_future(self._save(intent))
        await asyncio.wait({task}, timeout=wait)
        return Recording(task)

    async def _save(self, intent: Intent) -> None:
        kind, payload = encode_intent(intent)
        try:
            await self._store.open_intent(
                idempotency_key=intent.key,
                kind=kind,
                team_id=intent.origin.team_id,
                channel_id=intent.origin.channel_id,
                slack_user_id=intent.origin.user_id,
                payload=payload,
                response_url=intent.response_url if isinstance(intent, QuickSendIntent) else None,
            )
        except StoreError as exc:
            log.warning("could not save a send from %s: %s", intent.origin.user_id, exc)
            raise NotSavedError(NOT_SAVED) from None

    async def hold(self, intent: Intent) -> bool:
        """Save `intent` as held for the person's choice (which contact): nothing is sent
        until a button answers it (`held`). False when it could not be saved."""
        try:
            await self._save(intent)
            await self._store.close_intent(intent.key, HELD)
        except (NotSavedError, StoreError):
            return False
        return True

    async def held(self, key: str, origin: SlackOrigin) -> Intent | None:
        """The send saved under `key`, if `origin`'s person made it in that workspace: a send
        held for a choice (quiet hours, which contact) that a button now answers."""
        try:
            record = await self._store.get_intent(key)
        except StoreError as exc:
            log.warning("could not read a held send of %s: %s", origin.user_id, exc)
            return None
        if record is None or record.outcome != HELD:
            return None  # only a held send waits for a button
        if (record.team_id, record.slack_user_id) != (origin.team_id, origin.user_id):
            return None
        try:
            return decode_intent(record)
        except (KeyError, TypeError, ValueError):
            return None

    async def finish(
        self,
        intent: Intent,
        *,
        recording: Recording | None = None,
        lookup: Awaitable[tuple[Contact, bool]] | None = None,
        announce_queued: bool,
    ) -> Notice | None:
        """Queue the send (closing the intent with its outbox entry), or refuse it (closing
        the intent); returns what to tell the person, None when there is nothing new to say.

        `lookup` is a contact lookup already under way; `announce_queued` asks for a notice
        even when the send was queued for a known contact.
        """
        try:
            if recording is not None and not await recording.saved():
                return Notice(*error_notice(_title(intent), NOT_SAVED))
            return await self._finish(intent, lookup, announce_queued=announce_queued)
        finally:
            if isinstance(lookup, asyncio.Future) and not lookup.done():
                lookup.cancel()  # cut off by a stop: the lookup is done again at restart

    async def _finish(
        self,
        intent: Intent,
        lookup: Awaitable[tuple[Contact, bool]] | None,
        *,
        announce_queued: bool,
    ) -> Notice | None:
        reply = intent.reply if isinstance(intent, ComposerIntent) else None
        checked = check_draft(
            intent.draft, now=self._clock(), region=self._region, replying=reply is not None
        )
        if isinstance(checked, FieldErrors):
            detail = " ".join(checked.errors.values())
            return await self._refuse(intent, Notice(*error_notice(_title(intent), detail)))
        try:
            contact, created = await lookup if lookup is not None else (None, False)
            submitted = await self._outbound.submit(
                checked,
                intent.origin,
                idempotency_key=intent.key,
                reply=reply,
                contact=contact,
                contact_created=created,
            )
        except NotInChannelError:
            notice = Notice(*not_in_channel_notice(intent.origin.channel_id))
            return await self._refuse(intent, notice)
        except NotSavedError as exc:
            notice = Notice(*error_notice(_title(intent), exc.message))
            return await self._refuse(intent, notice, kept=KEPT_FOR_RESTART)
        except ComposeRejected as exc:
            return await self._refuse(intent, Notice(*error_notice(_title(intent), exc.message)))
        except QuietHoursError as exc:
            # Held, not refused: the person's answer (a button) sends it as a new intent.
            notice = Notice(*quiet_hours_notice(exc.choice, intent.key))
            return await self._refuse(intent, notice, outcome=HELD)
        if not submitted.created:
            return None  # a replay of a send already queued (and announced)
        if announce_queued or submitted.contact_created:
            return Notice(
                *queued_notice(
                    contact_label(submitted.contact),
                    checked.channel,
                    created_contact=submitted.contact_created,
                )
            )
        return None

    async def _refuse(
        self, intent: Intent, notice: Notice, *, kept: str | None = None, outcome: str = REFUSED
    ) -> Notice | None:
        """Close the intent, then say why (told at most once: a restart will not repeat it).

        If the intent cannot be closed it stays open and the next start runs it again: a
        refusal that a second run would only repeat is said as it is; a send that could not
        be saved is said to be kept (`kept`), so the person does not send it a second time.
        """
        try:
            await self._store.close_intent(intent.key, outcome)
        except StoreError as exc:
            log.warning("could not close compose intent of %s: %s", intent.origin.user_id, exc)
            if kept is not None:
                return Notice(*error_notice(_title(intent), kept))
        return notice


def _title(intent: Intent) -> str:
    who = intent.draft.recipient
    if not who and isinstance(intent, ComposerIntent) and intent.reply is not None:
        who = intent.reply.contact_label
    return f"Couldn't send to {who or 'the contact'}"


class IntentRecovery:
    """Finishes every compose intent a stopped process left open.

    Alone on its database (SQLite), it runs once at start-up and takes only intents saved
    before this process started: any later one belongs to a listener of this process, which
    finishes it itself. With several instances (a shared store) an instance may die while the
    others run on, so it looks every third of a lease for intents open longer than a lease
    (a live listener closes its own within seconds), and each is taken by one instance only.
    Intents are finished one at a time, oldest first, so two sends to one customer keep their
    order. Run as a worker: it returns only at the stop (a worker that returned would read
    as a dead one).
    """

    name = "intent-recovery"

    def __init__(
        self,
        *,
        store: Store,
        intents: ComposeIntents,
        outbound: OutboundService,
        session: aiohttp.ClientSession | None = None,
        clock: Callable[[], float] = time.time,
        batch: int = 200,
    ) -> None:
        self._store = store
        self._intents = intents
        self._outbound = outbound
        self._session = session
        self._clock = clock
        self._batch = batch
        self._started_at = clock()

    async def run(self, stopping: asyncio.Event) -> None:
        await self.recover(stopping)
        if not self._store.shared:
            await stopping.wait()
            return
        interval = self._store.lease_seconds / 3
        while not stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), interval)
            if not stopping.is_set():
                await self.recover(stopping)

    def _cut_off_before(self) -> float:
        if self._store.shared:
            return self._clock() - self._store.lease_seconds
        return self._started_at

    async def recover(self, stopping: asyncio.Event | None = None) -> int:
        """Finish (or report and close) the open intents; returns how many were taken."""
        seen: set[int] = set()
        taken = 0
        while stopping is None or not stopping.is_set():
            found = await self._store.list_open_intents(
                created_before=self._cut_off_before(), limit=self._batch
            )
            batch = [record for record in found if record.id not in seen]
            if not batch:
                break
            if not seen:
                log.info("%d sends were cut off by the last stop; finishing them", len(found))
            for record in batch:
                if stopping is not None and stopping.is_set():
                    break
                seen.add(record.id)
                if self._store.shared and not await self._store.mark_processed(
                    "intent-recovery",
                    record.idempotency_key,
                    ttl_seconds=2 * self._store.lease_seconds,
                ):
                    # Another instance is finishing it (or died doing so: then the mark
                    # expires and the next look takes it; finishing is idempotent).
                    continue
                await self._recover_one(record)
                taken += 1
        if taken:
            log.info("%d sends cut off by the last stop were finished or reported", taken)
        return taken

    async def _recover_one(self, record: ComposeIntent) -> None:
        try:
            intent = decode_intent(record)
        except (KeyError, TypeError, ValueError) as exc:
            log.error("compose intent %d cannot be read (%s); closing it", record.id, exc)
            if await self._store.close_intent(record.idempotency_key, UNREADABLE):
                detail = (
                    "It could not be read back after the bridge restarted, so nothing was "
                    "sent. Please send it again."
                )
                await self._tell(record, Notice(*error_notice("A send was not finished", detail)))
            return
        age = self._clock() - record.created_at
        if age > STALE_AFTER_SECONDS:
            if await self._store.close_intent(record.idempotency_key, STALE):
                detail = (
                    f"The bridge stopped before it could queue it and restarted "
                    f"{_duration(age)} later, too late to send it now. Nothing was sent; "
                    "send it again if it is still needed."
                )
                await self._tell(record, Notice(*error_notice(_title(intent), detail)))
            return
        try:
            notice = await self._intents.finish(intent, announce_queued=True)
        except StoreError:
            raise  # the worker is restarted and tries again; the intent is still open
        except Exception:
            log.exception("compose intent %d could not be finished", record.id)
            if await self._store.close_intent(record.idempotency_key, FAILED):
                detail = (
                    "Something went wrong finishing it after the bridge restarted; nothing "
                    "was sent. Please send it again."
                )
                await self._tell(record, Notice(*error_notice(_title(intent), detail)))
            return
        if notice is not None:
            await self._tell(record, notice)

    async def _tell(self, record: ComposeIntent, notice: Notice) -> None:
        """Through the command's response_url while Slack still takes it, else an ephemeral."""
        fresh = self._clock() - record.created_at < RESPONSE_URL_FRESH_SECONDS
        if record.response_url and fresh and await self._respond(record.response_url, notice):
            return
        await self._outbound.notify(_origin_of(record), notice.text, notice.blocks)

    async def _respond(self, url: str, notice: Notice) -> bool:
        client = AsyncWebhookClient(url, session=self._session)
        try:
            # slack_sdk applies no timeout of its own to a session it was given.
            async with asyncio.timeout(RESPOND_TIMEOUT_SECONDS):
                response = await client.send(
                    text=notice.text, blocks=notice.blocks, response_type="ephemeral"
                )
        except (aiohttp.ClientError, TimeoutError) as exc:
            # Only the error's kind: its text may carry the URL, which works like a token.
            log.info("response_url post failed (%s); telling with an ephemeral", type(exc).__name__)
            return False
        if response.status_code != 200:
            log.info("response_url answered %d; telling with an ephemeral", response.status_code)
            return False
        return True


def _duration(seconds: float) -> str:
    hours, rest = divmod(int(seconds), 3600)
    return f"{hours} h {rest // 60} min" if hours else f"{rest // 60} min"


# ---------------------------------------------------------------- what is saved


def encode_intent(intent: Intent) -> tuple[str, dict[str, Any]]:
    """(kind, payload): what is needed to run the compose again."""
    draft = encode_draft(intent.draft)
    if isinstance(intent, QuickSendIntent):
        return IntentKind.QUICK_SEND.value, {"draft": draft}
    reply = intent.reply
    packed: dict[str, Any] | None = None
    if reply is not None:
        packed = {
            "thread_id": reply.thread_id,
            "contact_id": reply.contact_id,
            "contact_label": reply.contact_label,
            "email_thread_id": reply.email_thread_id,
            "reply_message_id": reply.reply_message_id,
            "email_reply_mode": reply.email_reply_mode.value if reply.email_reply_mode else None,
            "location_id": reply.location_id,
        }
    return IntentKind.COMPOSER.value, {"draft": draft, "reply": packed}


def _origin_of(record: ComposeIntent) -> SlackOrigin:
    return SlackOrigin(
        team_id=record.team_id, channel_id=record.channel_id, user_id=record.slack_user_id
    )


def decode_intent(record: ComposeIntent) -> Intent:
    """The intent saved in `record`; KeyError, TypeError or ValueError if it is not one."""
    payload = record.payload
    origin = _origin_of(record)
    draft = decode_draft(payload["draft"])
    kind = IntentKind(record.kind)
    if kind is IntentKind.QUICK_SEND:
        return QuickSendIntent(
            key=record.idempotency_key,
            origin=origin,
            draft=draft,
            response_url=record.response_url,
        )
    packed = payload.get("reply")
    reply: ReplyContext | None = None
    if packed is not None:
        mode = packed.get("email_reply_mode")
        reply = ReplyContext(
            thread_id=int(packed["thread_id"]),
            contact_id=text_field(packed["contact_id"]),
            contact_label=text_field(packed["contact_label"]),
            email_thread_id=optional_text(packed.get("email_thread_id")),
            reply_message_id=optional_text(packed.get("reply_message_id")),
            email_reply_mode=EmailReplyMode(mode) if mode is not None else None,
            location_id=text_field(packed.get("location_id", "")),
        )
    return ComposerIntent(key=record.idempotency_key, origin=origin, draft=draft, reply=reply)
