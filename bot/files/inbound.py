"""InboundFiles: a customer's attachments into the conversation's Slack thread, each once.

Each attachment URL of a message shown in a thread is downloaded (`AttachmentFetcher`: bounded,
public addresses only) and uploaded into that thread as a Slack file right after the message's
post; one that is too big, or whose download fails, is shown as a line with its link and the
reason instead.

Once: each (message, URL) is claimed with a dedupe mark (`mark_processed`) just before it is
copied, so a redelivered webhook, the poller seeing the message again, or a retry of the event
after a stop between the post and the uploads copies no file twice. A note in kv_store marks
the file as being copied until it is done with. A later attempt that finds the claim taken and
the note still there knows an attempt stopped (or Slack gave no clear answer) in the middle of
this file: it looks in the thread for a file of that name and size shared since, and uploads
only when there is none (when the thread cannot be read, it says so with the link instead). A
claim is given back when nothing reached Slack (its notice could not be posted either).

WhatsApp media arrive with an empty body and no attachments (HLD#299); the message read again
seconds later has them. `expect_late_media` stores a check in the inbound queue, under a key
of its own (so the conversation's next messages never wait behind it), and the worker hands it
back to `check_late_media` at `checks_after` seconds after the post (durable: a restart finds
it in the database), until the media are there or the last check has passed.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import aiohttp
from slack_sdk.errors import SlackApiError

from bot.files.fetch import (
    AttachmentFetcher,
    FetchedFile,
    FetchFailed,
    FetchProblem,
    attachment_name,
)
from bot.highlevel import HighLevelError
from bot.posting.errors import SlackPostError, WorkspaceGone
from bot.posting.marks import PostMark
from bot.posting.poster import SlackPoster, SlackPosters
from bot.ui.file_notice_builder import (
    FileIssue,
    FileNotCopied,
    file_not_copied,
    late_media_caption,
)
from storage import InboundEvent, Store

if TYPE_CHECKING:
    from bot.tenancy.accounts import SubAccounts

log = logging.getLogger(__name__)

__all__ = [
    "FILE_MARK",
    "MEDIA_CHECKS_AFTER",
    "MEDIA_CHECK_EVENT",
    "FileTarget",
    "InboundFiles",
]

# The dedupe marks' source: one mark per (sub-account, message, attachment URL).
FILE_MARK = "inbound_file"
DEDUPE_TTL_SECONDS = 14 * 86_400
# The inbound queue's event type (and source) of a late-media check.
MEDIA_CHECK_EVENT = "whatsapp_media_check"
MEDIA_CHECK_SOURCE = "media_check"
# At most this many files of one message are copied (the post lists the first ten and counts
# the rest): a message with hundreds of URLs must not hold its conversation for hours.
MAX_FILES_PER_MESSAGE = 10
# kv_store key prefix of a file being copied (see InboundFiles.copy).
COPYING_KEY = "inbound_file_copying"
# An interrupted attempt's upload is looked for from a little before it began (clock skew).
LOOKUP_MARGIN_SECONDS = 300.0
LOOKUP_PAGE_SIZE = 200
LOOKUP_MAX_PAGES = 10
# Seconds after the post at which a WhatsApp message without its media is read again.
MEDIA_CHECKS_AFTER: tuple[float, ...] = (2.0, 5.0, 15.0, 30.0, 60.0)
# Upload failures that settle nothing: Slack may have shared the file (no answer, its own
# failure) or may take it on a later try (rate limit, the upload URL refusing the bytes). The
# event is retried, and that attempt looks in the thread before uploading again. Any other
# code is Slack refusing the upload: said in the thread.
_UNSETTLED = frozenset(
    {
        "no_answer",
        "upload_failed",
        "ratelimited",
        "internal_error",
        "fatal_error",
        "service_unavailable",
        "request_timeout",
        "unknown_error",
    }
)


@dataclass(frozen=True, slots=True)
class FileTarget:
    """Where a message's files go: the thread of the post that shows it."""

    location_id: str
    key_id: str  # the message's key (see IncomingMessage.key_id)
    message_id: str  # HighLevel's messageId, to read the message again
    team_id: str | None  # the Slack workspace
    channel_id: str
    thread_ts: str

    def to_payload(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_payload(cls, data: Mapping[str, Any]) -> FileTarget:
        team_id = data.get("team_id")
        return cls(
            location_id=str(data["location_id"]),
            key_id=str(data["key_id"]),
            message_id=str(data["message_id"]),
            team_id=str(team_id) if team_id else None,
            channel_id=str(data["channel_id"]),
            thread_ts=str(data["thread_ts"]),
        )


class InboundFiles:
    """Copies customers' attachments into their threads (see the module's description)."""

    def __init__(
        self,
        *,
        store: Store,
        slack: SlackPosters,
        fetcher: AttachmentFetcher,
        accounts: SubAccounts,
        checks_after: Sequence[float] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._slack = slack
        self._fetcher = fetcher
        self._accounts = accounts
        # Read here, not as a default argument: a test may set the module's value.
        self._checks_after = tuple(
            sorted(MEDIA_CHECKS_AFTER if checks_after is None else checks_after)
        )
        if not self._checks_after:
            raise ValueError("checks_after needs at least one delay")
        self._clock = clock

    async def copy(
        self, target: FileTarget, urls: Iterable[str], *, comment: str | None = None
    ) -> int:
        """Copy each of `urls` (the first MAX_FILES_PER_MESSAGE) not copied before into the
        thread, in order; returns how many were uploaded. `comment` (escaped mrkdwn) goes with
        the first file uploaded.

        SlackPostError when Slack took neither a file nor its notice (the worker retries the
        event; the files done by then are not done again).
        """
        poster = await self._slack.poster(target.team_id)
        uploaded = 0
        for url in list(dict.fromkeys(urls))[:MAX_FILES_PER_MESSAGE]:
            digest = hashlib.sha256(url.encode("utf-8", "surrogatepass")).hexdigest()[:32]
            mark = f"{target.location_id}:{target.key_id}:{digest}"
            # Written before the claim, removed once the file is done with: found together
            # with a taken claim, it means an attempt stopped while copying this file.
            copying = f"{COPYING_KEY}:{mark}"
            started = await self._store.kv_get(copying)
            if started is None:
                await self._store.kv_set(copying, repr(self._clock()))
            if await self._store.mark_processed(FILE_MARK, mark, ttl_seconds=DEDUPE_TTL_SECONDS):
                interrupted_at = None
            elif started is None:
                await self._store.kv_delete(copying)
                continue  # copied, or shown as a link, by an earlier attempt
            else:
                interrupted_at = _seconds(started, self._clock())
            try:
                done = await self._copy_one(
                    poster,
                    target,
                    url,
                    digest,
                    comment if uploaded == 0 else None,
                    interrupted_at=interrupted_at,
                )
            except _Unsettled as unsettled:
                # Claim and note stay: the next attempt looks for the file before uploading.
                raise unsettled.error from None
            except SlackPostError:
                # Nothing of it reached Slack: the next attempt copies it.
                await self._store.forget_processed(FILE_MARK, mark)
                await self._store.kv_delete(copying)
                raise
            await self._store.kv_delete(copying)
            uploaded += done
        return uploaded

    async def _copy_one(
        self,
        poster: SlackPoster,
        target: FileTarget,
        url: str,
        digest: str,
        comment: str | None,
        *,
        interrupted_at: float | None,
    ) -> bool:
        """Upload one file, or post the line saying why not; True when it was uploaded.

        `interrupted_at`: when an earlier attempt that stopped while copying this file began;
        what it may have shared is looked for first, so it is not shown twice.
        """
        try:
            fetched = await self._fetcher.fetch(url)
        except FetchFailed as exc:
            log.info(
                "a file of HighLevel message %s is not copied into Slack: %s",
                target.key_id,
                exc,
            )
            too_big = exc.problem is FetchProblem.TOO_BIG
            notice = FileNotCopied(
                name=attachment_name(url),
                url=url,
                issue=FileIssue(exc.problem.value),
                size=exc.size,
                limit=self._fetcher.max_bytes if too_big else None,
                status=exc.status,
            )
            await self._notify(poster, target, digest, notice, interrupted_at=interrupted_at)
            return False
        if interrupted_at is not None:
            shared = await self._shared_since(poster, target, fetched, interrupted_at)
            if shared:
                log.info(
                    "a file of HighLevel message %s was shared before a stop; not again",
                    target.key_id,
                )
                return False
            if shared is None:
                notice = FileNotCopied(
                    name=fetched.name, url=url, issue=FileIssue.SLACK_UNCONFIRMED
                )
                await self._notify_unconfirmed(poster, target, digest, notice)
                return False
        try:
            await poster.upload_files(
                target.channel_id,
                target.thread_ts,
                [(fetched.name, fetched.data)],
                comment=comment,
            )
        except WorkspaceGone:
            raise
        except SlackPostError as exc:
            if exc.error in _UNSETTLED:
                raise _Unsettled(exc) from exc
            log.warning(
                "a file of HighLevel message %s: Slack refused its upload (%s)",
                target.key_id,
                exc.error,
            )
            notice = FileNotCopied(
                name=fetched.name,
                url=url,
                issue=FileIssue.SLACK_REFUSED,
                slack_error=exc.error,
            )
            await self._notify(poster, target, digest, notice, interrupted_at=None)
            return False
        return True

    async def _shared_since(
        self, poster: SlackPoster, target: FileTarget, fetched: FetchedFile, since: float
    ) -> bool | None:
        """A file of this name and size is in the thread from `since` on (an upload an
        interrupted attempt made); None when the thread cannot be read."""
        cursor: str | None = None
        oldest = f"{max(0.0, since - LOOKUP_MARGIN_SECONDS):.6f}"
        try:
            for _ in range(LOOKUP_MAX_PAGES):
                page = await poster.client.conversations_replies(
                    channel=target.channel_id,
                    ts=target.thread_ts,
                    oldest=oldest,
                    limit=LOOKUP_PAGE_SIZE,
                    cursor=cursor,
                )
                for message in page.get("messages") or []:
                    if not isinstance(message, Mapping) or not message.get("bot_id"):
                        continue
                    for item in message.get("files") or []:
                        if (
                            isinstance(item, Mapping)
                            and item.get("name") == fetched.name
                            and item.get("size") in (None, fetched.size)
                        ):
                            return True
                metadata = page.get("response_metadata") or {}
                cursor = str(metadata.get("next_cursor") or "") or None
                if cursor is None:
                    return False
        except (SlackApiError, TimeoutError, aiohttp.ClientError) as exc:
            log.warning("could not look in a thread for a file shared before a stop (%s)", exc)
            return None
        return None

    async def _notify(
        self,
        poster: SlackPoster,
        target: FileTarget,
        digest: str,
        notice: FileNotCopied,
        *,
        interrupted_at: float | None,
    ) -> None:
        mark = PostMark(f"{target.location_id}:file:{target.key_id}:{digest}")
        if interrupted_at is not None:
            # The stopped attempt may have said it already.
            with contextlib.suppress(SlackPostError):
                found = await poster.find(
                    target.channel_id,
                    since=interrupted_at,
                    key=mark.key,
                    thread_ts=target.thread_ts,
                )
                if found is not None:
                    return
        text, blocks = file_not_copied(notice)
        await poster.post(target.channel_id, text, blocks, thread_ts=target.thread_ts, mark=mark)

    async def _notify_unconfirmed(
        self, poster: SlackPoster, target: FileTarget, digest: str, notice: FileNotCopied
    ) -> None:
        """The file may be in the thread: say so, and never upload it again (even when this
        line cannot be posted: the link is in the message's own post)."""
        try:
            await self._notify(poster, target, digest, notice, interrupted_at=None)
        except WorkspaceGone:
            raise
        except SlackPostError as exc:
            log.warning("could not say so in the thread either (%s)", exc.error)

    # ------------------------------------------------------------ WhatsApp's late media

    async def expect_late_media(self, target: FileTarget) -> None:
        """The message shown at `target` should have media that HighLevel does not list yet:
        read it again at each of `checks_after` (once per message, however often asked)."""
        now = self._clock()
        await self._store.enqueue_inbound(
            source=MEDIA_CHECK_SOURCE,
            event_type=MEDIA_CHECK_EVENT,
            conversation_key=f"media:{target.location_id}:{target.key_id}",
            payload={**target.to_payload(), "shown_at": now},
            dedupe_keys=[f"media-check:{target.location_id}:{target.key_id}"],
            ttl_seconds=DEDUPE_TTL_SECONDS,
            not_before=now + self._checks_after[0],
        )

    async def check_late_media(self, event: InboundEvent) -> bool:
        """One check of a message's late media (a MEDIA_CHECK_EVENT): copies them when they
        are there. True when the checks are over; False when the event was put back for the
        next check."""
        payload = event.payload
        target = FileTarget.from_payload(payload)
        attachments: list[str] = []
        caption = ""
        try:
            message = await self._accounts.client(target.location_id).get_message(target.message_id)
            attachments, caption = list(message.attachments), message.body or ""
        except (HighLevelError, LookupError) as exc:
            log.info(
                "could not read HighLevel message %s again for its media: %s",
                target.message_id,
                getattr(exc, "message", None) or exc,
            )
        if attachments:
            copied = await self.copy(target, attachments, comment=late_media_caption(caption))
            log.info(
                "WhatsApp media of message %s arrived: %d of %d files copied into Slack",
                target.message_id,
                copied,
                len(attachments),
            )
            return True
        due = self._next_check(float(payload.get("shown_at") or event.received_at))
        if due is None:
            log.info(
                "no media arrived for WhatsApp message %s within %.0f s; they stay in HighLevel",
                target.message_id,
                self._checks_after[-1],
            )
            return True
        await self._store.retry_inbound(
            event.id, next_attempt_at=due, error="waiting for WhatsApp media (HLD#299)"
        )
        return False

    def _next_check(self, shown_at: float) -> float | None:
        now = self._clock()
        return next((shown_at + s for s in self._checks_after if shown_at + s > now), None)


class _Unsettled(Exception):
    """An upload ended without saying whether the file was shared (`error`)."""

    def __init__(self, error: SlackPostError) -> None:
        super().__init__(error.error)
        self.error = error


def _seconds(text: str, default: float) -> float:
    try:
        return float(text)
    except ValueError:
        return default
