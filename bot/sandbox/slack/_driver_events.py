"""Events API callbacks: envelopes, redeliveries, people's messages, URL verification."""

from __future__ import annotations

import copy
import secrets
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from bot.sandbox.slack._driver_base import DriverBase, DriverResult, _retry_headers, _with
from bot.sandbox.slack._envelopes import event_envelope
from bot.sandbox.slack._files import SlackFile
from bot.sandbox.slack._models import JsonDict, SlackMessage


class EventsApi(DriverBase):
    """Event callbacks as Slack wraps, signs and retries them."""

    # ------------------------------------------------------------------ Events API

    def event_envelope(
        self,
        event: Mapping[str, Any],
        *,
        event_id: str | None = None,
        event_time: int | None = None,
    ) -> JsonDict:
        """The ``event_callback`` envelope Slack wraps ``event`` in (with the workspace's
        Enterprise Grid organization, if it has one)."""
        envelope = event_envelope(
            self.workspace,
            event,
            token=self._verification_token,
            team_id=self.team_id,
            api_app_id=self.api_app_id,
            event_id=event_id or f"Ev{next(self._serial):08d}{secrets.token_hex(2).upper()}",
            event_time=event_time if event_time is not None else int(time.time()),
        )
        envelope["event_context"] = f"4-{secrets.token_urlsafe(24)}"
        return envelope

    async def event(
        self,
        event: Mapping[str, Any],
        *,
        event_id: str | None = None,
        event_time: int | None = None,
        retry_num: int | None = None,
        retry_reason: str | None = None,
        timestamp: int | None = None,
        signature: str | None = None,
    ) -> DriverResult:
        """Deliver ``event`` in an ``event_callback``; ``retry_num``/``retry_reason`` mark a
        redelivery (``X-Slack-Retry-Num``/``X-Slack-Retry-Reason``, e.g. ``http_timeout``)."""
        envelope = self.event_envelope(event, event_id=event_id, event_time=event_time)
        return await self._send_envelope(
            envelope,
            retry_num=retry_num,
            retry_reason=retry_reason,
            timestamp=timestamp,
            signature=signature,
        )

    async def redeliver(
        self,
        previous: DriverResult,
        *,
        retry_num: int = 1,
        retry_reason: str = "http_timeout",
    ) -> DriverResult:
        """Send an earlier event callback again, as Slack's retries do (same body, same id)."""
        if previous.content_type != "application/json" or "event_id" not in previous.sent:
            raise ValueError("only Events API callbacks are redelivered by Slack")
        return _with(
            await self.post_raw(
                previous.body,
                content_type=previous.content_type,
                extra_headers=_retry_headers(retry_num, retry_reason),
                sent=previous.sent,
            ),
            event_id=previous.event_id,
            message=previous.message,
        )

    async def _send_envelope(
        self,
        envelope: JsonDict,
        *,
        retry_num: int | None,
        retry_reason: str | None,
        timestamp: int | None,
        signature: str | None,
        message: SlackMessage | None = None,
    ) -> DriverResult:
        result = await self._post_json(
            envelope,
            timestamp=timestamp,
            signature=signature,
            extra_headers=_retry_headers(retry_num, retry_reason),
        )
        return _with(result, event_id=envelope["event_id"], message=message)

    async def user_message(
        self,
        channel_id: str,
        user_id: str,
        text: str,
        *,
        thread_ts: str | None = None,
        files: Sequence[SlackFile | str] | None = None,
        event_id: str | None = None,
        retry_num: int | None = None,
        retry_reason: str | None = None,
    ) -> DriverResult:
        """A person writes ``text`` in a channel or thread: stored in the simulator (so
        ``conversations.replies`` sees it) and delivered as a ``message`` event. With ``files``
        (of the workspace, ``add_file``) the event is a ``file_share`` carrying them."""
        channel = self.workspace.channel(channel_id)
        if channel is None:
            raise ValueError(f"unknown channel {channel_id}")
        message = self.workspace.post_as_user(
            channel_id, user_id, text, thread_ts=thread_ts, files=files
        )
        event: JsonDict = {
            "type": "message",
            "client_msg_id": str(uuid.uuid4()),
            "text": text,
            "user": user_id,
            "ts": message.ts,
            "team": self.team_id,
            "blocks": [
                {
                    "type": "rich_text",
                    "block_id": secrets.token_urlsafe(3),
                    "elements": [
                        {"type": "rich_text_section", "elements": [{"type": "text", "text": text}]}
                    ],
                }
            ],
            "channel": channel_id,
            "event_ts": message.ts,
            "channel_type": "im" if channel.is_im else "group" if channel.is_private else "channel",
        }
        if message.files is not None:
            event.update(subtype="file_share", files=copy.deepcopy(message.files))
        if thread_ts is not None:
            root = self.workspace.message(channel_id, thread_ts)
            event["thread_ts"] = thread_ts
            if root is not None:
                event["parent_user_id"] = root.user
        return await self._send_envelope(
            self.event_envelope(event, event_id=event_id),
            retry_num=retry_num,
            retry_reason=retry_reason,
            timestamp=None,
            signature=None,
            message=message,
        )

    async def app_home_opened(
        self, user_id: str, *, tab: str = "home", event_id: str | None = None
    ) -> DriverResult:
        """A person opens the app's Home tab (or Messages tab: ``tab="messages"``); the event
        carries the Home tab they see now, if the app published one for them."""
        home = self.workspace.home_view(user_id)
        event: JsonDict = {
            "type": "app_home_opened",
            "user": user_id,
            "channel": f"D{user_id.lstrip('UW')}",
            "tab": tab,
            "event_ts": f"{time.time():.6f}",
        }
        if home is not None and tab == "home":
            event["view"] = copy.deepcopy(home.view)
        return await self._send_envelope(
            self.event_envelope(event, event_id=event_id),
            retry_num=None,
            retry_reason=None,
            timestamp=None,
            signature=None,
        )

    async def url_verification(
        self,
        challenge: str | None = None,
        *,
        timestamp: int | None = None,
        signature: str | None = None,
    ) -> DriverResult:
        """Slack's Request URL check; the app must echo ``challenge``."""
        body = {
            "token": self._verification_token,
            "challenge": challenge or secrets.token_urlsafe(32),
            "type": "url_verification",
        }
        return await self._post_json(body, timestamp=timestamp, signature=signature)
