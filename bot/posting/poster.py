"""Showing things in Slack: thread posts and notices, rendered by the pure builders in `bot.ui`.

Each post that shows a HighLevel message or a send carries Slack message metadata (a `PostMark`)
naming what it shows, so a post Slack made but whose answer never reached us (a crash, a 5xx or
a timeout after the fact) can be found again instead of being posted twice.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol, TypeVar

from slack_sdk.errors import SlackApiError, SlackRequestError
from slack_sdk.models.blocks import Block
from slack_sdk.web.async_client import AsyncWebClient

from bot.posting.errors import (
    NO_ANSWER,
    SlackPostError,
    cannot_look,
    error_code,
    retry_after,
    retry_after_or_no_answer,
)
from bot.posting.marks import POST_EVENT_TYPE, FoundPost, PostMark
from bot.posting.pacing import ChannelPacer, slack_retry_after
from bot.posting.wire import as_dicts
from bot.ui.inbound_builder import InboundPost, inbound_reply, inbound_root, mirrored_outbound
from bot.ui.thread_builder import SendPost, reply_message, root_message

log = logging.getLogger(__name__)

MEMBERSHIP_TTL_SECONDS = 60.0
# A post is looked for from this long before the attempt that may have made it: Slack's clock
# (message ts) and ours may differ.
LOOKUP_MARGIN_SECONDS = 300.0
# conversations.history/replies pages read per look-up (Slack recommends at most 200 a page).
LOOKUP_PAGE_SIZE = 200
LOOKUP_MAX_PAGES = 10
READ_ATTEMPTS = 3

_T = TypeVar("_T")


class SlackErrorObserver(Protocol):
    """Told of each Web API call Slack refused or never answered (metrics): the API method,
    Slack's error code ("no_answer" when none came), and whether it was Slack's rate limit."""

    def slack_api_error(self, *, method: str, error: str, rate_limited: bool) -> None: ...


class SlackPoster:
    """Posts, updates and ephemeral notices through the Web API (SLACK_API_URL)."""

    def __init__(
        self,
        client: AsyncWebClient,
        pacer: ChannelPacer | None = None,
        *,
        observer: SlackErrorObserver | None = None,
    ) -> None:
        # Posts are paced here, per channel; give this poster a client without slack_sdk's
        # rate-limit retry handler, or a 429 would be retried behind the pacer's back.
        self._client = client
        self._pacer = pacer or ChannelPacer()
        self._members: dict[str, tuple[float, bool]] = {}
        self._team_id: str | None = None
        self._bot_id: str | None = None
        self._observer = observer
        # The workspace's token as of now (refreshed when about to expire), taken just before
        # each call: a call that waited its turn in the pacer past a rotating token's expiry
        # goes with the new one. None: the client's token never changes (SLACK_BOT_TOKEN).
        self.current_token: Callable[[], Awaitable[str]] | None = None

    @property
    def client(self) -> AsyncWebClient:
        """The Web API client (its token is the workspace's current one)."""
        return self._client

    async def _watched(self, method: str, call: Awaitable[_T]) -> _T:
        """`call` (not started yet: it reads the client's token when it starts), with each
        refusal or missing answer told to the observer (and raised)."""
        if self.current_token is not None:
            try:
                self._client.token = await self.current_token()
            except BaseException:
                if inspect.iscoroutine(call):
                    call.close()  # never started: nothing to wait for
                raise
        try:
            return await call
        except SlackApiError as exc:
            if self._observer is not None:
                rate_limited = slack_retry_after(exc) is not None
                self._observer.slack_api_error(
                    method=method, error=error_code(exc), rate_limited=rate_limited
                )
            raise
        except NO_ANSWER:
            if self._observer is not None:
                self._observer.slack_api_error(method=method, error="no_answer", rate_limited=False)
            raise

    async def can_post(self, channel_id: str) -> bool:
        """The bot is in the channel (or it is a DM with the bot), so it can post there."""
        cached = self._members.get(channel_id)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        for attempt in range(READ_ATTEMPTS):
            try:
                info = await self._watched(
                    "conversations.info", self._client.conversations_info(channel=channel_id)
                )
                break
            except SlackApiError as exc:
                log.info("conversations.info %s: %s", channel_id, error_code(exc))
                return False
            except NO_ANSWER:
                # A read is safe to repeat (this client has no connection-retry handler, so
                # that posts are never repeated blindly); the last failure is the caller's.
                if attempt + 1 == READ_ATTEMPTS:
                    raise
        channel = info.get("channel") or {}
        member = bool(channel.get("is_member") or channel.get("is_im"))
        self._members[channel_id] = (time.monotonic() + MEMBERSHIP_TTL_SECONDS, member)
        return member

    async def team_id(self) -> str:
        """The workspace's id (auth.test, asked once): thread rows are keyed by it."""
        if self._team_id is None:
            await self._identify()
        return self._team_id or ""

    async def _identify(self) -> None:
        try:
            response = await self._watched("auth.test", self._client.auth_test())
        except SlackApiError as exc:
            raise SlackPostError(error_code(exc)) from exc
        except NO_ANSWER as exc:
            raise SlackPostError("no_answer") from exc
        self._team_id = str(response.get("team_id") or "")
        self._bot_id = str(response.get("bot_id") or "") or None

    async def show_inbound(
        self,
        channel_id: str,
        post: InboundPost,
        *,
        thread_ts: str | None,
        mark: PostMark | None = None,
    ) -> str:
        """Post a message from HighLevel: a new thread root (no thread_ts) or a thread reply."""
        if thread_ts is None:
            text, blocks = inbound_root(post)
        elif post.direction == "outbound":
            text, blocks = mirrored_outbound(post)
        else:
            text, blocks = inbound_reply(post)
        return await self.post(channel_id, text, blocks, thread_ts=thread_ts, mark=mark)

    async def find(
        self,
        channel_id: str,
        *,
        since: float,
        key: str | None = None,
        root_of: str | None = None,
        thread_ts: str | None = None,
    ) -> FoundPost | None:
        """Our post marked `key`, or the root marked as `root_of`'s, if an earlier attempt made it.

        With `thread_ts` that thread's messages are read, else the channel's top-level ones
        (where every root is); only those from `since` (epoch seconds, less a margin for the
        clocks) on, at most LOOKUP_MAX_PAGES pages. SlackPostError if Slack would not answer.
        """
        if self._team_id is None:
            await self._identify()
        oldest = f"{max(0.0, since - LOOKUP_MARGIN_SECONDS):.6f}"
        cursor: str | None = None
        for _ in range(LOOKUP_MAX_PAGES):
            try:
                if thread_ts is None:
                    page = await self._watched(
                        "conversations.history",
                        self._client.conversations_history(
                            channel=channel_id,
                            oldest=oldest,
                            limit=LOOKUP_PAGE_SIZE,
                            include_all_metadata=True,
                            cursor=cursor,
                        ),
                    )
                else:
                    page = await self._watched(
                        "conversations.replies",
                        self._client.conversations_replies(
                            channel=channel_id,
                            ts=thread_ts,
                            oldest=oldest,
                            limit=LOOKUP_PAGE_SIZE,
                            include_all_metadata=True,
                            cursor=cursor,
                        ),
                    )
            except SlackApiError as exc:
                if error_code(exc) == "thread_not_found":
                    return None  # nothing can have been posted in a thread that is not there
                raise SlackPostError(error_code(exc)) from exc
            except NO_ANSWER as exc:
                raise SlackPostError("no_answer") from exc
            for message in page.get("messages") or []:
                found = self._marked(message)
                if found is not None and (
                    (key is not None and found.key == key)
                    or (root_of is not None and found.root_of == root_of)
                ):
                    return found
            cursor = str((page.get("response_metadata") or {}).get("next_cursor") or "") or None
            if cursor is None:
                return None
        log.warning(
            "looked through %d pages of %s without finding an earlier post; posting it again",
            LOOKUP_MAX_PAGES,
            channel_id,
        )
        return None

    def _marked(self, message: Mapping[str, Any]) -> FoundPost | None:
        """The mark of one of our own posts (another app's metadata is never taken for ours)."""
        if self._bot_id is not None and message.get("bot_id") != self._bot_id:
            return None
        metadata = message.get("metadata")
        if not isinstance(metadata, Mapping) or metadata.get("event_type") != POST_EVENT_TYPE:
            return None
        payload = metadata.get("event_payload")
        ts = message.get("ts")
        if not isinstance(payload, Mapping) or not isinstance(ts, str):
            return None
        key = payload.get("key")
        root_of = payload.get("root_of")
        if not isinstance(key, str):
            return None
        return FoundPost(ts=ts, key=key, root_of=root_of if isinstance(root_of, str) else None)

    async def react(self, channel_id: str, ts: str, name: str) -> None:
        """Add a reaction; one that is already there is fine."""
        try:
            await self._watched(
                "reactions.add",
                self._client.reactions_add(channel=channel_id, timestamp=ts, name=name),
            )
        except SlackApiError as exc:
            if error_code(exc) != "already_reacted":
                raise SlackPostError(error_code(exc)) from exc
        except NO_ANSWER as exc:
            raise SlackPostError("no_answer") from exc

    def forget_membership(self, channel_id: str) -> None:
        self._members.pop(channel_id, None)

    async def upload_files(
        self,
        channel_id: str,
        thread_ts: str | None,
        files: Sequence[tuple[str, bytes]],
        *,
        comment: str | None = None,
    ) -> list[str]:
        """Upload `files` (name, bytes) into the channel, or into the thread `thread_ts`, as
        one message (files_upload_v2, paced like a post; a rate limit is waited out); returns
        the Slack file ids. SlackPostError: Slack's code, `upload_failed` when the upload
        URL refused the bytes (nothing was shared), `no_answer` when it is not known."""

        async def attempt() -> Mapping[str, Any]:
            response = await self._watched(
                "files.completeUploadExternal",
                self._client.files_upload_v2(
                    file_uploads=[
                        {"filename": name, "content": data, "title": name} for name, data in files
                    ],
                    channel=channel_id,
                    thread_ts=thread_ts,
                    initial_comment=comment,
                ),
            )
            return response.data if isinstance(response.data, dict) else {}

        try:
            response = await self._pacer.paced(
                channel_id, attempt, is_rate_limited=slack_retry_after
            )
        except SlackApiError as exc:
            if error_code(exc) == "not_in_channel":
                self.forget_membership(channel_id)
            raise SlackPostError(error_code(exc)) from exc
        except SlackRequestError as exc:
            raise SlackPostError("upload_failed") from exc
        except NO_ANSWER as exc:
            raise SlackPostError("no_answer") from exc
        shared = response.get("files")
        return [
            str(item["id"])
            for item in (shared if isinstance(shared, list) else [])
            if isinstance(item, Mapping) and item.get("id")
        ]

    async def show_send(
        self,
        channel_id: str,
        post: SendPost,
        *,
        thread_ts: str | None,
        ts: str | None = None,
        as_root: bool,
        mark: PostMark | None = None,
    ) -> str:
        """Post (or, given `ts`, update) the Slack message that shows one send; returns its ts.

        Its pictures are shown from their Slack files, which Slack checks: once one is deleted
        Slack refuses the blocks, and the post is made (or updated) without the thumbnails.
        """
        build = root_message if as_root else reply_message
        try:
            return await self._show_send(channel_id, build(post), thread_ts, ts, mark)
        except SlackPostError as exc:
            if not post.files or exc.error not in _BLOCKS_REFUSED:
                raise
        return await self._show_send(channel_id, build(post, thumbnails=False), thread_ts, ts, mark)

    async def _show_send(
        self,
        channel_id: str,
        message: tuple[str, list[Block]],
        thread_ts: str | None,
        ts: str | None,
        mark: PostMark | None,
    ) -> str:
        text, blocks = message
        if ts is not None:
            await self.update(channel_id, ts, text, blocks)
            return ts
        return await self.post(channel_id, text, blocks, thread_ts=thread_ts, mark=mark)

    async def post(
        self,
        channel_id: str,
        text: str,
        blocks: Sequence[Block],
        *,
        thread_ts: str | None = None,
        mark: PostMark | None = None,
    ) -> str:
        """Post a message; returns its ts.

        A marked post that meets Slack's own failure (5xx) or no answer at all is tried again,
        but first looked for: Slack may have made it before failing. An unmarked one is tried
        again only after a 5xx (it may show twice).
        """
        started = time.time()
        tries = 0
        sent_blocks = as_dicts(blocks)

        async def attempt() -> Mapping[str, Any]:
            nonlocal tries
            tries += 1
            if tries > 1 and mark is not None:
                found = await self._find_after_failure(channel_id, mark, thread_ts, started)
                if found is not None:
                    log.info("a post Slack failed to confirm was made after all; not posting again")
                    return {"ts": found.ts}
            response = await self._watched(
                "chat.postMessage",
                self._client.chat_postMessage(
                    channel=channel_id,
                    text=text,
                    blocks=sent_blocks,
                    thread_ts=thread_ts,
                    unfurl_links=False,
                    unfurl_media=False,
                    metadata=mark.metadata() if mark is not None else None,
                ),
            )
            return response.data if isinstance(response.data, dict) else {}

        try:
            response = await self._pacer.paced(
                channel_id,
                attempt,
                is_rate_limited=retry_after if mark is None else retry_after_or_no_answer,
            )
        except SlackApiError as exc:
            if error_code(exc) == "not_in_channel":
                self.forget_membership(channel_id)
            raise SlackPostError(error_code(exc)) from exc
        except NO_ANSWER as exc:
            raise SlackPostError("no_answer") from exc
        return str(response["ts"])

    async def _find_after_failure(
        self, channel_id: str, mark: PostMark, thread_ts: str | None, since: float
    ) -> FoundPost | None:
        try:
            return await self.find(channel_id, key=mark.key, thread_ts=thread_ts, since=since)
        except SlackPostError as exc:
            if not cannot_look(exc):
                raise
            log.warning(
                "could not look for a post Slack failed to confirm (%s); posting it again, so it"
                " may show twice: grant the app the history scopes in manifest.yml",
                exc.error,
            )
            return None

    async def update(self, channel_id: str, ts: str, text: str, blocks: Sequence[Block]) -> None:
        sent_blocks = as_dicts(blocks)
        try:
            await self._pacer.paced(
                channel_id,
                lambda: self._watched(
                    "chat.update",
                    self._client.chat_update(
                        channel=channel_id, ts=ts, text=text, blocks=sent_blocks
                    ),
                ),
                # An update is the same whichever attempt lands, so no answer is tried again too.
                is_rate_limited=retry_after_or_no_answer,
            )
        except SlackApiError as exc:
            raise SlackPostError(error_code(exc)) from exc
        except NO_ANSWER as exc:
            raise SlackPostError("no_answer") from exc

    async def ephemeral(
        self, channel_id: str, user_id: str, text: str, blocks: Sequence[Block] = ()
    ) -> None:
        """A notice only `user_id` sees; failures are logged, as there is nobody else to tell."""
        try:
            await self._watched(
                "chat.postEphemeral",
                self._client.chat_postEphemeral(
                    channel=channel_id, user=user_id, text=text, blocks=as_dicts(blocks) or None
                ),
            )
        except SlackApiError as exc:
            log.warning("could not show a notice in %s: %s", channel_id, error_code(exc))


# Slack's answers for blocks it will not show (an image whose Slack file is gone, say).
_BLOCKS_REFUSED = frozenset({"invalid_blocks", "invalid_blocks_format"})


class SlackPosters(Protocol):
    """The poster of each workspace (`SlackWorkspaces`; `OnePoster` for one)."""

    async def poster(self, team_id: str | None) -> SlackPoster: ...


class OnePoster:
    """One poster for every workspace id: the bridge serves one workspace (tests, tools)."""

    def __init__(self, poster: SlackPoster) -> None:
        self._poster = poster

    async def poster(self, team_id: str | None) -> SlackPoster:
        return self._poster
