"""Showing things in Slack: thread posts and notices, rendered by the pure builders in `bot.ui`."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from slack_sdk.errors import SlackApiError
from slack_sdk.models.blocks import Block
from slack_sdk.web.async_client import AsyncWebClient

from bot.pacing import ChannelPacer, slack_retry_after
from bot.ui.inbound_builder import InboundPost, inbound_reply, inbound_root, mirrored_outbound
from bot.ui.thread_builder import SendPost, reply_message, root_message

log = logging.getLogger(__name__)

MEMBERSHIP_TTL_SECONDS = 60.0
# After Slack's own failure (HTTP 5xx) a post or update is tried again, after this pause.
SERVER_ERROR_PAUSE_SECONDS = 1.0


class SlackPostError(Exception):
    """Slack refused a post; `error` is Slack's code (not_in_channel, channel_not_found, …)."""

    def __init__(self, error: str) -> None:
        super().__init__(error)
        self.error = error


class SlackPoster:
    """Posts, updates and ephemeral notices through the Web API (SLACK_API_URL)."""

    def __init__(self, client: AsyncWebClient, pacer: ChannelPacer | None = None) -> None:
        # Posts are paced here, per channel; give this poster a client without slack_sdk's
        # rate-limit retry handler, or a 429 would be retried behind the pacer's back.
        self._client = client
        self._pacer = pacer or ChannelPacer()
        self._members: dict[str, tuple[float, bool]] = {}
        self._team_id: str | None = None

    async def can_post(self, channel_id: str) -> bool:
        """The bot is in the channel (or it is a DM with the bot), so it can post there."""
        cached = self._members.get(channel_id)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        try:
            info = await self._client.conversations_info(channel=channel_id)
        except SlackApiError as exc:
            log.info("conversations.info %s: %s", channel_id, _code(exc))
            return False
        channel = info.get("channel") or {}
        member = bool(channel.get("is_member") or channel.get("is_im"))
        self._members[channel_id] = (time.monotonic() + MEMBERSHIP_TTL_SECONDS, member)
        return member

    async def team_id(self) -> str:
        """The workspace's id (auth.test, asked once): thread rows are keyed by it."""
        if self._team_id is None:
            try:
                response = await self._client.auth_test()
            except SlackApiError as exc:
                raise SlackPostError(_code(exc)) from exc
            self._team_id = str(response.get("team_id") or "")
        return self._team_id

    async def show_inbound(
        self, channel_id: str, post: InboundPost, *, thread_ts: str | None
    ) -> str:
        """Post a message from HighLevel: a new thread root (no thread_ts) or a thread reply."""
        if thread_ts is None:
            text, blocks = inbound_root(post)
        elif post.direction == "outbound":
            text, blocks = mirrored_outbound(post)
        else:
            text, blocks = inbound_reply(post)
        return await self.post(channel_id, text, blocks, thread_ts=thread_ts)

    async def react(self, channel_id: str, ts: str, name: str) -> None:
        """Add a reaction; one that is already there is fine."""
        try:
            await self._client.reactions_add(channel=channel_id, timestamp=ts, name=name)
        except SlackApiError as exc:
            if _code(exc) != "already_reacted":
                raise SlackPostError(_code(exc)) from exc

    def forget_membership(self, channel_id: str) -> None:
        self._members.pop(channel_id, None)

    async def show_send(
        self,
        channel_id: str,
        post: SendPost,
        *,
        thread_ts: str | None,
        ts: str | None = None,
        as_root: bool,
    ) -> str:
        """Post (or, given `ts`, update) the Slack message that shows one send; returns its ts."""
        text, blocks = root_message(post) if as_root else reply_message(post)
        if ts is not None:
            await self.update(channel_id, ts, text, blocks)
            return ts
        return await self.post(channel_id, text, blocks, thread_ts=thread_ts)

    async def post(
        self, channel_id: str, text: str, blocks: Sequence[Block], *, thread_ts: str | None = None
    ) -> str:
        try:
            response = await self._pacer.paced(
                channel_id,
                lambda: self._client.chat_postMessage(
                    channel=channel_id,
                    text=text,
                    blocks=list(blocks),
                    thread_ts=thread_ts,
                    unfurl_links=False,
                    unfurl_media=False,
                ),
                is_rate_limited=_retry_after,
            )
        except SlackApiError as exc:
            if _code(exc) == "not_in_channel":
                self.forget_membership(channel_id)
            raise SlackPostError(_code(exc)) from exc
        return str(response["ts"])

    async def update(self, channel_id: str, ts: str, text: str, blocks: Sequence[Block]) -> None:
        try:
            await self._pacer.paced(
                channel_id,
                lambda: self._client.chat_update(
                    channel=channel_id, ts=ts, text=text, blocks=list(blocks)
                ),
                is_rate_limited=_retry_after,
            )
        except SlackApiError as exc:
            raise SlackPostError(_code(exc)) from exc

    async def ephemeral(
        self, channel_id: str, user_id: str, text: str, blocks: Sequence[Block] = ()
    ) -> None:
        """A notice only `user_id` sees; failures are logged, as there is nobody else to tell."""
        try:
            await self._client.chat_postEphemeral(
                channel=channel_id, user=user_id, text=text, blocks=list(blocks) or None
            )
        except SlackApiError as exc:
            log.warning("could not show a notice in %s: %s", channel_id, _code(exc))


def _retry_after(exc: BaseException) -> float | None:
    """Seconds to wait before trying a post or update again; None: do not try again.

    Rate limits (429) are waited out. Slack's own failures (5xx) are tried again too: a post
    that never appears would leave a person not knowing how their send went, which is worse
    than the rare post Slack made before failing showing twice (ruling that out would need
    reading channel history, a scope the app does not ask for).
    """
    wait = slack_retry_after(exc)
    if wait is not None or not isinstance(exc, SlackApiError) or exc.response is None:
        return wait
    status = getattr(exc.response, "status_code", None)
    if isinstance(status, int) and status >= 500:
        return SERVER_ERROR_PAUSE_SECONDS
    return None


def _code(exc: SlackApiError) -> str:
    data = exc.response.data if exc.response is not None else None
    if isinstance(data, dict):
        return str(data.get("error", "unknown_error"))
    return "unknown_error"
