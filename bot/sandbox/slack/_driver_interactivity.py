"""Interactivity payloads: block_actions, view_submission, view_closed, message shortcuts."""

from __future__ import annotations

import copy
import secrets
import time
from collections.abc import Mapping
from typing import Any

from bot.sandbox.slack._driver_base import DriverBase, DriverResult, _with
from bot.sandbox.slack._models import JsonDict
from bot.sandbox.slack._state_values import (
    _action,
    _merged_state,
    build_state_values,
    with_file_entries,
)
from bot.sandbox.slack._workspace import ApiFailure


class Interactivity(DriverBase):
    """A person clicks, submits and closes, as Slack reports it to the app."""

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
            "enterprise": self._enterprise(),
            "is_enterprise_install": False,
        }
        if view_id is not None:
            sim_view = self._sim_view(view_id)
            blocks = sim_view.blocks
            view = copy.deepcopy(sim_view.view)
            values = with_file_entries(blocks, values, self.workspace.file_input_entry)
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
        view, with ``values`` filled in (a ``file_input``'s answer: file ids or ``SlackFile``s
        of the workspace, ``add_file``; the state carries their file objects); the app's answer
        is applied the way Slack applies it (closed, ``errors`` keep it open,
        ``update``/``push``/``clear``). Without it, a stand-in view with
        ``callback_id``/``private_metadata`` is sent.
        """
        if view_id is not None:
            sim_view = self._sim_view(view_id)
            view = copy.deepcopy(sim_view.view)
            values = with_file_entries(sim_view.blocks, values, self.workspace.file_input_entry)
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
            "enterprise": self._enterprise(),
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
            "enterprise": self._enterprise(),
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
            "enterprise": self._enterprise(),
            "callback_id": callback_id,
            "trigger_id": self.workspace.issue_trigger_id(user_id),
            "response_url": response_url,
            "message_ts": message_ts,
            "message": dict(message),
            "api_app_id": self.api_app_id,
        }
        return await self._post_payload(payload, timestamp=timestamp, signature=signature)
