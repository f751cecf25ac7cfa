"""response_urls: issuing them, and applying what an app POSTs to one the way Slack does."""

from __future__ import annotations

import copy
import secrets
import time
from typing import Any

from bot.sandbox.slack._models import EphemeralMessage, JsonDict, ResponseUrlPost
from bot.sandbox.slack._workspace_state import WorkspaceState
from bot.sandbox.slack._workspace_support import (
    RESPONSE_URL_MAX_USES,
    RESPONSE_URL_TTL_SECONDS,
    ApiFailure,
    _ResponseUrl,
    _str_arg,
    _truthy,
)


class ResponseUrls(WorkspaceState):
    """The response_urls the workspace issued and the POSTs they took."""

    # ------------------------------------------------------------------ response_url

    def _register_response_url(
        self,
        base_url: str,
        *,
        channel_id: str | None,
        user_id: str | None,
        message_ts: str | None,
    ) -> str:
        url_id = f"{next(self._serial)}-{secrets.token_hex(8)}"
        url = f"{base_url}response/{url_id}"
        self._response_urls[url_id] = _ResponseUrl(
            url, channel_id, user_id, message_ts, time.monotonic() + RESPONSE_URL_TTL_SECONDS
        )
        return url

    def issued_response_url(self, url_id: str) -> bool:
        return url_id in self._response_urls

    def _accept_response_url_post(self, url_id: str, body: Any) -> tuple[int, str]:
        """Apply one POST to a response_url; answers like Slack: (HTTP status, text body)."""
        target = self._response_urls.get(url_id)
        if target is None:
            return 404, "expired_url"
        accepted = False
        try:
            if target.uses >= RESPONSE_URL_MAX_USES or time.monotonic() > target.expires_at:
                return 404, "expired_url"
            if not isinstance(body, dict):
                return 400, "invalid_payload"
            target.uses += 1
            status, answer = self._apply_response(target, body)
            accepted = status == 200
            return status, answer
        finally:
            self._response_url_posts.append(
                ResponseUrlPost(
                    url=target.url,
                    body=copy.deepcopy(body) if isinstance(body, dict) else {"raw": body},
                    at=time.time(),
                    accepted=accepted,
                    channel_id=target.channel_id,
                    user_id=target.user_id,
                    message_ts=target.message_ts,
                )
            )

    def _apply_response(self, target: _ResponseUrl, body: JsonDict) -> tuple[int, str]:
        original = (
            self.message(target.channel_id, target.message_ts)
            if target.channel_id is not None and target.message_ts is not None
            else None
        )
        if _truthy(body.get("delete_original")):
            if original is None or original.deleted:
                return 404, "message_not_found"
            self._delete(original)
            return 200, "ok"
        try:
            text, blocks = self._message_content(body, require_content=True)
        except ApiFailure as failure:
            return 400, failure.error
        thread_ts = _str_arg(body, "thread_ts")
        if _truthy(body.get("replace_original")) and original is not None:
            self._edit(original, text or "", blocks)
        elif body.get("response_type") == "in_channel" and target.channel_id in self._channels:
            channel = self._channels[target.channel_id]
            self._bot_message(channel, text, blocks, thread_ts=thread_ts)
        else:
            self._ephemerals.append(
                EphemeralMessage(
                    channel=target.channel_id,
                    user=target.user_id,
                    ts=self._ts.next(),
                    text=text or "",
                    blocks=blocks,
                    thread_ts=thread_ts,
                    source="response_url",
                )
            )
        return 200, "ok"
