"""The driver's transport: v0 signing, signed POSTs, DriverResult, pieces of every payload."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import itertools
import json
import time
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlencode

import httpx

from bot.sandbox.slack._models import JsonDict, SimView, SlackMessage
from bot.sandbox.slack._workspace import SlackWorkspace
from bot.sandbox.slack.simulator import SlackSimulator

# Slack shows the user an error when the app has not answered within three seconds.
ACK_DEADLINE_SECONDS = 3.0
_USER_AGENT = "Slackbot 1.0 (+https://api.slack.com/robots)"


def slack_signature(signing_secret: str, timestamp: int | str, body: str) -> str:
    """Slack's v0 request signature for ``body`` sent at ``timestamp``."""
    base = f"v0:{timestamp}:{body}".encode()
    return "v0=" + hmac.new(signing_secret.encode(), base, hashlib.sha256).hexdigest()


@dataclasses.dataclass(frozen=True)
class DriverResult:
    """What the app answered, and what was sent to it."""

    status: int
    headers: Mapping[str, str]
    text: str
    json: Any
    elapsed_seconds: float
    sent: JsonDict
    body: str
    content_type: str
    trigger_id: str | None = None
    response_url: str | None = None
    event_id: str | None = None
    message: SlackMessage | None = None
    modal_error: str | None = None
    """Why the simulator refused the modal the app answered with (``response_action``)."""
    extra_headers: Mapping[str, str] = dataclasses.field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def within_ack_deadline(self) -> bool:
        return self.elapsed_seconds <= ACK_DEADLINE_SECONDS


class DriverBase:
    """Signs and sends requests to the app at ``app_url``, as a person of ``workspace``."""

    def __init__(
        self,
        app_url: str,
        signing_secret: str,
        simulator: SlackSimulator,
        *,
        team_id: str | None = None,
        workspace: SlackWorkspace | None = None,
        api_app_id: str = "A0SANDBOX",
        verification_token: str = "sandbox-verification-token",  # noqa: S107  (a fake)
        timeout_seconds: float = 10.0,
        options_url: str | None = None,
    ) -> None:
        self.app_url = app_url
        # The app's Options Load URL (manifest `interactivity.message_menu_options_url`), where
        # block_suggestion payloads go; Slack falls back to the Request URL (`app_url`).
        self.options_url = options_url or app_url
        self.simulator = simulator
        # Whose users, channels and views the payloads are about: `workspace`, else the one
        # named by `team_id` when the simulator has it, else the simulator's own.
        if workspace is None:
            known = team_id is not None and team_id in simulator.installs.workspaces
            workspace = simulator.workspace(team_id) if known and team_id else simulator
        self.workspace: SlackWorkspace = workspace
        self.team_id = team_id or workspace.team_id
        self.api_app_id = api_app_id
        self._signing_secret = signing_secret
        self._verification_token = verification_token
        self._timeout_seconds = timeout_seconds
        self._client = httpx.AsyncClient(timeout=timeout_seconds)
        self._serial = itertools.count(1)

    async def aclose(self) -> None:
        await self._client.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # ------------------------------------------------------------------ transport

    def sign(self, body: str, timestamp: int) -> str:
        """The ``X-Slack-Signature`` Slack would send for ``body`` at ``timestamp``."""
        return slack_signature(self._signing_secret, timestamp, body)

    async def post_raw(
        self,
        body: str,
        *,
        content_type: str,
        timestamp: int | None = None,
        signature: str | None = None,
        extra_headers: Mapping[str, str] | None = None,
        sent: JsonDict | None = None,
        url: str | None = None,
    ) -> DriverResult:
        """POST ``body`` to ``url`` (default ``app_url``) signed like Slack (or with the given
        ``timestamp``/``signature``)."""
        ts = int(time.time()) if timestamp is None else timestamp
        headers = {
            "Content-Type": content_type,
            "User-Agent": _USER_AGENT,
            "X-Slack-Request-Timestamp": str(ts),
            "X-Slack-Signature": (signature if signature is not None else self.sign(body, ts)),
            **(extra_headers or {}),
        }
        started = time.monotonic()
        response = await self._client.post(
            url or self.app_url, content=body.encode(), headers=headers
        )
        elapsed = time.monotonic() - started
        try:
            parsed = response.json() if response.content else None
        except ValueError:
            parsed = None
        return DriverResult(
            status=response.status_code,
            headers=dict(response.headers),
            text=response.text,
            json=parsed,
            elapsed_seconds=elapsed,
            sent=sent if sent is not None else {},
            body=body,
            content_type=content_type,
            extra_headers=dict(extra_headers or {}),
        )

    async def _post_form(
        self, fields: Mapping[str, str], *, timestamp: int | None, signature: str | None
    ) -> DriverResult:
        return await self.post_raw(
            urlencode(fields),
            content_type="application/x-www-form-urlencoded",
            timestamp=timestamp,
            signature=signature,
            sent=dict(fields),
        )

    async def _post_payload(
        self,
        payload: JsonDict,
        *,
        timestamp: int | None,
        signature: str | None,
        url: str | None = None,
    ) -> DriverResult:
        result = await self.post_raw(
            urlencode({"payload": json.dumps(payload)}),
            content_type="application/x-www-form-urlencoded",
            timestamp=timestamp,
            signature=signature,
            sent=payload,
            url=url,
        )
        return _with(
            result,
            trigger_id=payload.get("trigger_id"),
            response_url=payload.get("response_url"),
        )

    async def _post_json(
        self,
        envelope: JsonDict,
        *,
        timestamp: int | None,
        signature: str | None,
        extra_headers: Mapping[str, str] | None = None,
    ) -> DriverResult:
        return await self.post_raw(
            json.dumps(envelope),
            content_type="application/json",
            timestamp=timestamp,
            signature=signature,
            extra_headers=extra_headers,
            sent=envelope,
        )

    # ------------------------------------------------------------------ pieces of payloads

    def _user(self, user_id: str) -> JsonDict:
        user = self.workspace.user(user_id)
        name = user.name if user is not None else user_id.lower()
        return {"id": user_id, "username": name, "name": name, "team_id": self.team_id}

    def _channel(self, channel_id: str) -> JsonDict:
        channel = self.workspace.channel(channel_id)
        if channel is None:
            raise ValueError(f"unknown channel {channel_id}; add_channel() it in the simulator")
        return {"id": channel_id, "name": "directmessage" if channel.is_im else channel.name}

    def _team(self) -> JsonDict:
        team: JsonDict = {"id": self.team_id, "domain": self.workspace.team_domain}
        enterprise = self.workspace.enterprise
        if enterprise is not None:
            # Interaction payloads from a Grid workspace name the organization here too.
            team |= {"enterprise_id": enterprise.id, "enterprise_name": enterprise.name}
        return team

    def _enterprise(self) -> JsonDict | None:
        """An interaction payload's ``enterprise``: the workspace's organization, or null."""
        enterprise = self.workspace.enterprise
        return enterprise.to_api() if enterprise is not None else None

    def _new_response_url(self, **where: str | None) -> str:
        return self.simulator.new_response_url(team_id=self.workspace.team_id, **where)

    def _action_ts(self) -> str:
        return f"{time.time():.6f}"

    def _sim_view(self, view_id: str) -> SimView:
        view = self.workspace.view(view_id)
        if view is None or not view.is_open:
            raise ValueError(f"view {view_id} is not open in the simulator")
        return view


def _retry_headers(retry_num: int | None, retry_reason: str | None) -> dict[str, str]:
    headers: dict[str, str] = {}
    if retry_num is not None:
        headers["X-Slack-Retry-Num"] = str(retry_num)
        headers["X-Slack-Retry-Reason"] = retry_reason or "http_timeout"
    return headers


def _with(result: DriverResult, **changes: Any) -> DriverResult:
    return dataclasses.replace(result, **{k: v for k, v in changes.items() if v is not None})
