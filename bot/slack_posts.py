"""Showing things in Slack: thread posts and notices, rendered by the pure builders in `bot.ui`."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from slack_sdk.errors import SlackApiError
from slack_sdk.models.blocks import Block
from slack_sdk.web.async_client import AsyncWebClient

from bot.ui.thread_builder import SendPost, reply_message, root_message

log = logging.getLogger(__name__)

MEMBERSHIP_TTL_SECONDS = 60.0


class SlackPostError(Exception):
    """Slack refused a post; `error` is Slack's code (not_in_channel, channel_not_found, …)."""

    def __init__(self, error: str) -> None:
        super().__init__(error)
        self.error = error


class SlackPoster:
    """Posts, updates and ephemeral notices through the Web API (SLACK_API_URL)."""

    def __init__(self, client: AsyncWebClient) -> None:
        self._client = client
        self._members: dict[str, tuple[float, bool]] = {}

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
            response = await self._client.chat_postMessage(
                channel=channel_id,
                text=text,
                blocks=list(blocks),
                thread_ts=thread_ts,
                unfurl_links=False,
                unfurl_media=False,
            )
        except SlackApiError as exc:
            if _code(exc) == "not_in_channel":
                self.forget_membership(channel_id)
            raise SlackPostError(_code(exc)) from exc
        return str(response["ts"])

    async def update(self, channel_id: str, ts: str, text: str, blocks: Sequence[Block]) -> None:
        try:
            await self._client.chat_update(
                channel=channel_id, ts=ts, text=text, blocks=list(blocks)
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


def _code(exc: SlackApiError) -> str:
    data = exc.response.data if exc.response is not None else None
    if isinstance(data, dict):
        return str(data.get("error", "unknown_error"))
    return "unknown_error"
