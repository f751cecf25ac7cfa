"""Sends requests to a Slack app exactly as Slack does: signed slash commands, interactivity
payloads and Events API callbacks, with trigger ids and response_urls from the simulator.

Request shapes follow docs.slack.dev (interactivity/implementing-slash-commands,
reference/interaction-payloads, apis/events-api) and the v0 signing scheme
(authentication/verifying-requests-from-slack): ``X-Slack-Signature: v0=<hex HMAC-SHA256 of
"v0:{timestamp}:{body}">`` with ``X-Slack-Request-Timestamp``.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import hmac
import itertools
import json
import secrets
import time
import uuid
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlencode

import httpx

from bot.sandbox.slack._models import JsonDict, SimView, SlackMessage
from bot.sandbox.slack._workspace import ApiFailure, SlackWorkspace
from bot.sandbox.slack.simulator import SlackSimulator

# Slack shows the user an error when the app has not answered within three seconds.
ACK_DEADLINE_SECONDS = 3.0
_USER_AGENT = "Slackbot 1.0 (+https://api.slack.com/robots)"

# Input elements and where Slack puts the user's answer in ``view.state.values``.
_SINGLE_VALUE_KEYS = {
    "plain_text_input": "value",
    "email_text_input": "value",
    "url_text_input": "value",
    "number_input": "value",
    "users_select": "selected_user",
    "conversations_select": "selected_conversation",
    "channels_select": "selected_channel",
    "datepicker": "selected_date",
    "timepicker": "selected_time",
    "datetimepicker": "selected_date_time",
}
_OPTION_KEYS = {"static_select": "selected_option", "radio_buttons": "selected_option"}
_MULTI_OPTION_KEYS = {
    "multi_static_select": "selected_options",
    "checkboxes": "selected_options",
}
_MULTI_VALUE_KEYS = {
    "multi_users_select": "selected_users",
    "multi_conversations_select": "selected_conversations",
    "multi_channels_select": "selected_channels",
}


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


def _option(value: Any) -> JsonDict:
    if isinstance(value, Mapping):
        return dict(value)
    return {"text": {"type": "plain_text", "text": str(value), "emoji": True}, "value": str(value)}


def _state_entry(element_type: str, value: Any) -> JsonDict:
    """One ``state.values[block_id][action_id]`` entry for what a user entered."""
    if isinstance(value, Mapping) and "type" in value:
        return dict(value)  # the test spelled the entry out itself
    entry: JsonDict = {"type": element_type}
    if element_type in _OPTION_KEYS:
        entry[_OPTION_KEYS[element_type]] = None if value is None else _option(value)
    elif element_type in _MULTI_OPTION_KEYS:
        entry[_MULTI_OPTION_KEYS[element_type]] = [_option(v) for v in value or []]
    elif element_type in _MULTI_VALUE_KEYS:
        entry[_MULTI_VALUE_KEYS[element_type]] = list(value or [])
    else:
        entry[_SINGLE_VALUE_KEYS.get(element_type, "value")] = value
    return entry


def _is_empty(answer: Any) -> bool:
    if isinstance(answer, Mapping) and "type" in answer:
        return all(_is_empty(v) for k, v in answer.items() if k != "type")
    return answer is None or answer == "" or answer == []


def _interactive_elements(blocks: list[JsonDict]) -> dict[tuple[str, str], tuple[JsonDict, bool]]:
    """``(block_id, action_id) -> (element, required)`` for every element a user can fill."""
    found: dict[tuple[str, str], tuple[JsonDict, bool]] = {}
    for block in blocks:
        block_id = str(block.get("block_id"))
        element = block.get("element")
        if block.get("type") == "input" and isinstance(element, dict):
            required = not block.get("optional", False)
            found[(block_id, str(element.get("action_id")))] = (element, required)
        others = list(block.get("elements") or []) if block.get("type") == "actions" else []
        if isinstance(block.get("accessory"), dict):
            others.append(block["accessory"])
        for other in others:
            if isinstance(other, dict) and "action_id" in other:
                found[(block_id, str(other["action_id"]))] = (other, False)
    return found


def build_state_values(
    blocks: list[JsonDict],
    values: Mapping[str, Mapping[str, Any]] | None,
    *,
    submitting: bool = True,
) -> JsonDict:
    """``view.state.values`` as Slack sends it, from ``{block_id: {action_id: answer}}``.

    An answer is a plain value (text, a date, an option value, a list for multi-selects) shaped
    by the element type found in ``blocks``, or a full state entry dict with a ``type``.
    Every input block appears, unanswered ones empty. With ``blocks`` given, answering an
    element that is not there raises, and so does leaving a required input empty when
    ``submitting``: Slack would not let the user submit.
    """
    known = _interactive_elements(blocks)
    answers = {
        (block_id, action_id): answer
        for block_id, actions in (values or {}).items()
        for action_id, answer in actions.items()
    }
    state: dict[str, dict[str, Any]] = {}
    for (block_id, action_id), (element, required) in known.items():
        if (block_id, action_id) in answers:
            answer = answers.pop((block_id, action_id))  # "" or None: the person cleared it
        else:
            # Untouched: Slack submits what the input shows, its initial value.
            answer = _initial_answer(element)
        is_input = any(b.get("block_id") == block_id and b.get("type") == "input" for b in blocks)
        if _is_empty(answer):
            if required and submitting:
                raise ValueError(
                    f"required input {block_id}/{action_id} is empty; Slack would not let "
                    "the user submit this modal"
                )
            if not is_input:
                continue
        entry = _state_entry(str(element.get("type")), answer)
        state.setdefault(block_id, {})[action_id] = entry
    for (block_id, action_id), answer in answers.items():
        if blocks:
            raise ValueError(f"no element {block_id}/{action_id} in this view")
        element_type = "multi_static_select" if isinstance(answer, list) else "plain_text_input"
        state.setdefault(block_id, {})[action_id] = _state_entry(element_type, answer)
    return {"values": state}


class SlackDriver:
    """Plays Slack's side of the HTTP conversation with an app at ``app_url``.

    Payloads come from a person of ``workspace`` (default: the simulator's own workspace, or
    the one ``team_id`` names); ``for_workspace`` gives a driver for another workspace.
    """

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
    ) -> None:
        self.app_url = app_url
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

    def for_workspace(self, team_id: str) -> SlackDriver:
        """A driver to the same app, sending as people of workspace ``team_id``."""
        return SlackDriver(
            self.app_url,
            self._signing_secret,
            self.simulator,
            workspace=self.simulator.workspace(team_id),
            api_app_id=self.api_app_id,
            verification_token=self._verification_token,
            timeout_seconds=self._timeout_seconds,
        )

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
    ) -> DriverResult:
        """POST ``body`` signed like Slack (or with the given ``timestamp``/``signature``)."""
        ts = int(time.time()) if timestamp is None else timestamp
        headers = {
            "Content-Type": content_type,
            "User-Agent": _USER_AGENT,
            "X-Slack-Request-Timestamp": str(ts),
            "X-Slack-Signature": (signature if signature is not None else self.sign(body, ts)),
            **(extra_headers or {}),
        }
        started = time.monotonic()
        response = await self._client.post(self.app_url, content=body.encode(), headers=headers)
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
        self, payload: JsonDict, *, timestamp: int | None, signature: str | None
    ) -> DriverResult:
        result = await self.post_raw(
            urlencode({"payload": json.dumps(payload)}),
            content_type="application/x-www-form-urlencoded",
            timestamp=timestamp,
            signature=signature,
            sent=payload,
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
        return {"id": self.team_id, "domain": self.workspace.team_domain}

    def _new_response_url(self, **where: str | None) -> str:
        return self.simulator.new_response_url(team_id=self.workspace.team_id, **where)

    def _action_ts(self) -> str:
        return f"{time.time():.6f}"

    def _sim_view(self, view_id: str) -> SimView:
        view = self.workspace.view(view_id)
        if view is None or not view.is_open:
            raise ValueError(f"view {view_id} is not open in the simulator")
        return view

    # ------------------------------------------------------------------ slash commands

    async def slash_command(
        self,
        command: str,
        text: str = "",
        *,
        user_id: str,
        channel_id: str,
        timestamp: int | None = None,
        signature: str | None = None,
    ) -> DriverResult:
        """A user runs ``command text`` in ``channel_id``."""
        if not command.startswith("/"):
            raise ValueError("a slash command starts with '/'")
        channel = self._channel(channel_id)
        response_url = self._new_response_url(channel_id=channel_id, user_id=user_id)
        trigger_id = self.workspace.issue_trigger_id(user_id)
        fields = {
            "token": self._verification_token,
            "team_id": self.team_id,
            "team_domain": self.workspace.team_domain,
            "channel_id": channel_id,
            "channel_name": channel["name"],
            "user_id": user_id,
            "user_name": self._user(user_id)["name"],
            "command": command,
            "text": text,
            "api_app_id": self.api_app_id,
            "is_enterprise_install": "false",
            "response_url": response_url,
            "trigger_id": trigger_id,
        }
        result = await self._post_form(fields, timestamp=timestamp, signature=signature)
        return _with(result, trigger_id=trigger_id, response_url=response_url)

    # ------------------------------------------------------------------ interactivity

    async def block_action(
        self,
        action_id: str,
        *,
        user_id: str,
        channel_id: str | None = None,
        message_ts: str | None = None,
        view_id: str | None = None,
        value: str | None = None,
        block_id: str | None = None,
        action: Mapping[str, Any] | None = None,
        values: Mapping[str, Mapping[str, Any]] | None = None,
        timestamp: int | None = None,
        signature: str | None = None,
    ) -> DriverResult:
        """A user clicks/chooses the element ``action_id`` in a message or an open modal.

        The element must exist there (its block_id, type, text and value are read from it);
        ``action`` adds or overrides fields of the action (e.g. ``selected_option``).
        """
        payload: JsonDict = {
            "type": "block_actions",
            "user": self._user(user_id),
            "api_app_id": self.api_app_id,
            "token": self._verification_token,
            "team": self._team(),
            "enterprise": None,
            "is_enterprise_install": False,
        }
        if view_id is not None:
            sim_view = self._sim_view(view_id)
            blocks = sim_view.blocks
            view = copy.deepcopy(sim_view.view)
            view["state"] = _merged_state(view.get("state"), blocks, values, submitting=False)
            sim_view.view["state"] = copy.deepcopy(view["state"])
            payload["container"] = {"type": "view", "view_id": view_id}
            payload["view"] = view
            payload["trigger_id"] = self.workspace.issue_trigger_id(user_id, view_id=view_id)
        elif channel_id is not None and message_ts is not None:
            channel = self._channel(channel_id)
            message = self.workspace.message(channel_id, message_ts)
            if message is not None and not message.deleted:
                blocks = message.blocks or []
                payload["message"] = message.to_api()
            else:
                ephemeral = next(
                    (e for e in self.workspace.ephemerals(channel_id) if e.ts == message_ts), None
                )
                if ephemeral is None:
                    raise ValueError(f"no message {message_ts} in {channel_id} to click on")
                message, blocks = None, ephemeral.blocks or []
            payload["container"] = {
                "type": "message",
                "message_ts": message_ts,
                "channel_id": channel_id,
                "is_ephemeral": message is None,
            }
            payload["channel"] = channel
            payload["state"] = {"values": {}}
            payload["trigger_id"] = self.workspace.issue_trigger_id(user_id)
            payload["response_url"] = self._new_response_url(
                channel_id=channel_id,
                user_id=user_id,
                message_ts=message_ts if message is not None else None,
            )
        else:
            raise ValueError("give channel_id and message_ts, or view_id")
        payload["actions"] = [
            _action(blocks, action_id, block_id, value, action, self._action_ts())
        ]
        return await self._post_payload(payload, timestamp=timestamp, signature=signature)

    async def view_submission(
        self,
        view_id: str | None = None,
        *,
        user_id: str,
        values: Mapping[str, Mapping[str, Any]] | None = None,
        callback_id: str | None = None,
        private_metadata: str | None = None,
        timestamp: int | None = None,
        signature: str | None = None,
    ) -> DriverResult:
        """A user submits a modal.

        With ``view_id`` (a modal the app opened in the simulator) the payload carries that
        view, with ``values`` filled in; the app's answer is applied the way Slack applies it
        (closed, ``errors`` keep it open, ``update``/``push``/``clear``). Without it, a
        stand-in view with ``callback_id``/``private_metadata`` is sent.
        """
        if view_id is not None:
            sim_view = self._sim_view(view_id)
            view = copy.deepcopy(sim_view.view)
            view["state"] = _merged_state(
                view.get("state"), sim_view.blocks, values, submitting=True
            )
            sim_view.view["state"] = copy.deepcopy(view["state"])
        else:
            view = self._stand_in_view(callback_id, private_metadata, values)
        trigger_id = self.workspace.issue_trigger_id(user_id, view_id=view["id"])
        payload: JsonDict = {
            "type": "view_submission",
            "team": self._team(),
            "user": self._user(user_id),
            "api_app_id": self.api_app_id,
            "token": self._verification_token,
            "trigger_id": trigger_id,
            "view": view,
            "response_urls": [],
            "enterprise": None,
            "is_enterprise_install": False,
        }
        result = await self._post_payload(payload, timestamp=timestamp, signature=signature)
        if view_id is None:
            return result
        return _with(result, modal_error=self._apply_submission_answer(view_id, result))

    def _apply_submission_answer(self, view_id: str, result: DriverResult) -> str | None:
        if not result.ok:
            return None  # Slack shows "We had some trouble connecting"; the modal stays.
        answer = result.json if isinstance(result.json, dict) else {}
        action = answer.get("response_action")
        try:
            if action == "errors":
                return None
            if action == "update":
                self.workspace.replace_view(view_id, answer.get("view"))
            elif action == "push":
                self.workspace.push_view(view_id, answer.get("view"))
            elif action == "clear":
                self.workspace.clear_views(view_id)
            else:
                self.workspace.close_view(view_id)
        except ApiFailure as failure:
            return failure.error + "".join(f"; {m}" for m in failure.messages)
        return None

    def _stand_in_view(
        self,
        callback_id: str | None,
        private_metadata: str | None,
        values: Mapping[str, Mapping[str, Any]] | None,
    ) -> JsonDict:
        view_id = f"V9{next(self._serial):09d}"
        return {
            "id": view_id,
            "team_id": self.team_id,
            "type": "modal",
            "title": {"type": "plain_text", "text": "Sandbox", "emoji": True},
            "blocks": [],
            "private_metadata": private_metadata or "",
            "callback_id": callback_id or "",
            "external_id": "",
            "state": build_state_values([], values),
            "hash": f"{int(time.time())}.{secrets.token_hex(4)}",
            "clear_on_close": False,
            "notify_on_close": False,
            "root_view_id": view_id,
            "previous_view_id": None,
            "app_id": self.api_app_id,
            "app_installed_team_id": self.team_id,
            "bot_id": self.workspace.bot_id,
        }

    async def view_closed(
        self,
        view_id: str | None = None,
        *,
        user_id: str,
        callback_id: str | None = None,
        private_metadata: str | None = None,
        is_cleared: bool = False,
        timestamp: int | None = None,
        signature: str | None = None,
    ) -> DriverResult:
        """A user closes a modal. Slack only tells apps that opened it with notify_on_close."""
        if view_id is not None:
            sim_view = self._sim_view(view_id)
            if not sim_view.view.get("notify_on_close"):
                raise ValueError(
                    f"view {view_id} was opened without notify_on_close; Slack sends no "
                    "view_closed for it (use simulator.close_view)"
                )
            view = copy.deepcopy(sim_view.view)
            if is_cleared:
                self.workspace.clear_views(view_id)
            else:
                self.workspace.close_view(view_id)
        else:
            view = self._stand_in_view(callback_id, private_metadata, None)
            view["notify_on_close"] = True
        payload: JsonDict = {
            "type": "view_closed",
            "team": self._team(),
            "user": self._user(user_id),
            "api_app_id": self.api_app_id,
            "token": self._verification_token,
            "view": view,
            "is_cleared": is_cleared,
            "enterprise": None,
            "is_enterprise_install": False,
        }
        return await self._post_payload(payload, timestamp=timestamp, signature=signature)

    async def message_action(
        self,
        callback_id: str,
        *,
        user_id: str,
        channel_id: str,
        message_ts: str | None = None,
        message: Mapping[str, Any] | None = None,
        timestamp: int | None = None,
        signature: str | None = None,
    ) -> DriverResult:
        """A user runs the message shortcut ``callback_id`` on a message.

        The message is read from the simulator by ``message_ts``, or given as ``message``.
        """
        channel = self._channel(channel_id)
        if message is None:
            stored = self.workspace.message(channel_id, message_ts) if message_ts else None
            if stored is None or stored.deleted:
                raise ValueError(f"no message {message_ts} in {channel_id}")
            message = stored.to_api()
        message_ts = str(message.get("ts", message_ts))
        response_url = self._new_response_url(
            channel_id=channel_id, user_id=user_id, message_ts=message_ts
        )
        payload: JsonDict = {
            "type": "message_action",
            "token": self._verification_token,
            "action_ts": self._action_ts(),
            "team": self._team(),
            "user": self._user(user_id),
            "channel": channel,
            "is_enterprise_install": False,
            "enterprise": None,
            "callback_id": callback_id,
            "trigger_id": self.workspace.issue_trigger_id(user_id),
            "response_url": response_url,
            "message_ts": message_ts,
            "message": dict(message),
            "api_app_id": self.api_app_id,
        }
        return await self._post_payload(payload, timestamp=timestamp, signature=signature)

    # ------------------------------------------------------------------ Events API

    def event_envelope(
        self,
        event: Mapping[str, Any],
        *,
        event_id: str | None = None,
        event_time: int | None = None,
    ) -> JsonDict:
        """The ``event_callback`` envelope Slack wraps ``event`` in."""
        return {
            "token": self._verification_token,
            "team_id": self.team_id,
            "context_team_id": self.team_id,
            "context_enterprise_id": None,
            "api_app_id": self.api_app_id,
            "event": dict(event),
            "type": "event_callback",
            "event_id": event_id or f"Ev{next(self._serial):08d}{secrets.token_hex(2).upper()}",
            "event_time": event_time if event_time is not None else int(time.time()),
            "authorizations": [
                {
                    "enterprise_id": None,
                    "team_id": self.team_id,
                    "user_id": self.workspace.bot_user_id,
                    "is_bot": True,
                    "is_enterprise_install": False,
                }
            ],
            "is_ext_shared_channel": False,
            "event_context": f"4-{secrets.token_urlsafe(24)}",
        }

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
        event_id: str | None = None,
        retry_num: int | None = None,
        retry_reason: str | None = None,
    ) -> DriverResult:
        """A person writes ``text`` in a channel or thread: stored in the simulator (so
        ``conversations.replies`` sees it) and delivered as a ``message`` event."""
        channel = self.workspace.channel(channel_id)
        if channel is None:
            raise ValueError(f"unknown channel {channel_id}")
        message = self.workspace.post_as_user(channel_id, user_id, text, thread_ts=thread_ts)
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


def _retry_headers(retry_num: int | None, retry_reason: str | None) -> dict[str, str]:
    headers: dict[str, str] = {}
    if retry_num is not None:
        headers["X-Slack-Retry-Num"] = str(retry_num)
        headers["X-Slack-Retry-Reason"] = retry_reason or "http_timeout"
    return headers


def _initial_answer(element: JsonDict) -> Any:
    """The value an element shows before anyone touches it (None when it starts empty)."""
    if "initial_value" in element:
        return element["initial_value"]
    if isinstance(element.get("initial_option"), Mapping):
        return element["initial_option"].get("value")
    if isinstance(element.get("initial_options"), list):
        return [o.get("value") for o in element["initial_options"] if isinstance(o, Mapping)]
    for key in (
        "initial_date_time",
        "initial_date",
        "initial_time",
        "initial_user",
        "initial_channel",
        "initial_conversation",
    ):
        if key in element:
            return element[key]
    return None


def _merged_state(
    current: Any,
    blocks: list[JsonDict],
    values: Mapping[str, Mapping[str, Any]] | None,
    *,
    submitting: bool,
) -> JsonDict:
    """The view's state after the user entered ``values``; earlier answers are kept."""
    earlier = current.get("values", {}) if isinstance(current, Mapping) else {}
    # Slack forgets the state of blocks a views.update removed.
    present = {block.get("block_id") for block in blocks}
    merged: dict[str, dict[str, Any]] = {
        b: dict(actions) for b, actions in earlier.items() if b in present
    }
    for block_id, actions in (values or {}).items():
        merged.setdefault(block_id, {}).update(actions)
    return build_state_values(blocks, merged, submitting=submitting)


def _action(
    blocks: list[JsonDict],
    action_id: str,
    block_id: str | None,
    value: str | None,
    overrides: Mapping[str, Any] | None,
    action_ts: str,
) -> JsonDict:
    """The ``actions[0]`` entry for clicking ``action_id`` among ``blocks``."""
    for block in blocks:
        if block_id is not None and block.get("block_id") != block_id:
            continue
        candidates: list[Any] = []
        if block.get("type") == "actions":
            candidates = list(block.get("elements") or [])
        for key in ("accessory", "element"):
            if isinstance(block.get(key), dict):
                candidates.append(block[key])
        for element in candidates:
            if isinstance(element, dict) and element.get("action_id") == action_id:
                action: JsonDict = {
                    "type": element.get("type"),
                    "action_id": action_id,
                    "block_id": block.get("block_id"),
                    "action_ts": action_ts,
                }
                if "text" in element:
                    action["text"] = copy.deepcopy(element["text"])
                if value is not None or "value" in element:
                    action["value"] = value if value is not None else element["value"]
                action.update(overrides or {})
                return action
    if not blocks and block_id is not None:
        # A stand-in with no blocks to read from: trust the caller.
        action = {"type": "button", "action_id": action_id, "block_id": block_id}
        action.update({"action_ts": action_ts, "value": value} if value is not None else {})
        action.update(overrides or {})
        return action
    raise ValueError(f"no element with action_id {action_id!r} to click on")


def _with(result: DriverResult, **changes: Any) -> DriverResult:
    return dataclasses.replace(result, **{k: v for k, v in changes.items() if v is not None})
