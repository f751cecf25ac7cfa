"""Modals: trigger ids, views.open/push/update, and the view stack people close or change."""

from __future__ import annotations

import copy
import secrets
import time
from collections.abc import Mapping
from typing import Any

from bot.sandbox.slack._models import JsonDict, SimView
from bot.sandbox.slack._validation import view_problems
from bot.sandbox.slack._workspace_state import WorkspaceState
from bot.sandbox.slack._workspace_support import (
    _MAX_VIEW_STACK,
    ApiFailure,
    _missing,
    _str_arg,
    _Trigger,
    _truthy,
)


class ViewMethods(WorkspaceState):
    """views.open, views.push and views.update, and what people do to open modals."""

    def issue_trigger_id(self, user_id: str | None = None, *, view_id: str | None = None) -> str:
        """A fresh trigger id, valid once, for ``trigger_ttl_seconds`` (Slack: 3 s)."""
        trigger_id = (
            f"{int(time.time())}.{next(self._serial)}{secrets.randbelow(10**6):06d}"
            f".{secrets.token_hex(16)}"
        )
        self._triggers[trigger_id] = _Trigger(
            user_id, view_id, time.monotonic() + self.trigger_ttl_seconds
        )
        return trigger_id

    def close_view(self, view_id: str) -> None:
        """The user closed (or submitted) this view: it and views pushed on it go away."""
        view = self._views.get(view_id)
        if view is None:
            return
        for other in self._views.values():
            same_stack = other.root_view_id == view.root_view_id and other.is_open
            if same_stack and (other.id == view_id or self._is_above(other, view_id)):
                other.is_open = False

    def clear_views(self, view_id: str) -> None:
        """``response_action: clear`` / Cancel-all: the whole stack of this view closes."""
        view = self._views.get(view_id)
        if view is None:
            return
        for other in self._views.values():
            if other.root_view_id == view.root_view_id:
                other.is_open = False

    def replace_view(self, view_id: str, new_view: Any) -> SimView:
        """``response_action: update``: validated like ``views.update``."""
        return self._update_view(self._open_view(view_id), new_view)

    def push_view(self, onto_view_id: str, new_view: Any) -> SimView:
        """``response_action: push``: validated like ``views.push``."""
        return self._push_view(self._open_view(onto_view_id), new_view)

    def _open_view(self, view_id: str) -> SimView:
        view = self._views.get(view_id)
        if view is None or not view.is_open:
            raise ApiFailure("not_found")
        return view

    def _is_above(self, candidate: SimView, base_id: str) -> bool:
        previous = candidate.previous_view_id
        while previous is not None:
            if previous == base_id:
                return True
            above = self._views.get(previous)
            previous = above.previous_view_id if above is not None else None
        return False

    # ------------------------------------------------------------------ methods: views

    def _check_trigger(self, args: JsonDict) -> _Trigger:
        trigger_id = _str_arg(args, "trigger_id") or _str_arg(args, "interactivity_pointer")
        if trigger_id is None:
            raise _missing("trigger_id")
        trigger = self._triggers.get(trigger_id)
        if trigger is None:
            raise ApiFailure("invalid_trigger_id")
        if trigger.used:
            raise ApiFailure("exchanged_trigger_id")
        if time.monotonic() > trigger.expires_at:
            raise ApiFailure("expired_trigger_id")
        return trigger

    def _checked_view(self, args: Mapping[str, Any], *, keep: SimView | None = None) -> JsonDict:
        view = args.get("view")
        problems = view_problems(view)
        if problems or not isinstance(view, dict):
            raise ApiFailure("invalid_arguments", messages=problems)
        external_id = view.get("external_id") or ""
        reused = external_id and external_id in self._used_external_ids
        if reused and (keep is None or keep.external_id != external_id):
            raise ApiFailure("duplicate_external_id")
        return view

    def _materialize(
        self,
        given: JsonDict,
        *,
        view_id: str,
        root_view_id: str,
        previous_view_id: str | None,
        state: JsonDict | None = None,
    ) -> JsonDict:
        view = {
            "id": view_id,
            "team_id": self.team_id,
            "type": given.get("type", "modal"),
            "title": copy.deepcopy(given.get("title")),
            "blocks": self._with_ids(given.get("blocks") or []),
            "close": copy.deepcopy(given.get("close")),
            "submit": copy.deepcopy(given.get("submit")),
            "private_metadata": given.get("private_metadata") or "",
            "callback_id": given.get("callback_id") or "",
            "external_id": given.get("external_id") or "",
            "state": state if state is not None else {"values": {}},
            "hash": f"{int(time.time())}.{secrets.token_hex(4)}",
            "clear_on_close": _truthy(given.get("clear_on_close")),
            "notify_on_close": _truthy(given.get("notify_on_close")),
            "root_view_id": root_view_id,
            "previous_view_id": previous_view_id,
            "app_id": self.app_id,
            "app_installed_team_id": self.team_id,
            "bot_id": self.bot_id,
        }
        if view["external_id"]:
            self._used_external_ids.add(view["external_id"])
        return view

    def _views_open(self, args: JsonDict) -> JsonDict:
        trigger = self._check_trigger(args)
        given = self._checked_view(args)
        trigger.used = True
        view_id = self._new_id("V")
        view = SimView(
            view_id,
            trigger.user_id,
            self._materialize(given, view_id=view_id, root_view_id=view_id, previous_view_id=None),
        )
        self._views[view_id] = view
        return {"view": copy.deepcopy(view.view)}

    def _views_push(self, args: JsonDict) -> JsonDict:
        trigger = self._check_trigger(args)
        onto = self._views.get(trigger.view_id or "")
        if onto is None or not onto.is_open:
            candidates = self.open_views(trigger.user_id) if trigger.user_id else []
            onto = candidates[-1] if candidates else None
        if onto is None:
            # Undocumented; a trigger from outside any modal has nothing to push onto.
            raise ApiFailure("invalid_trigger_id")
        pushed = self._push_view(onto, args.get("view"))
        trigger.used = True
        return {"view": copy.deepcopy(pushed.view)}

    def _push_view(self, onto: SimView, new_view: Any) -> SimView:
        given = self._checked_view({"view": new_view})
        stack = [
            v for v in self._views.values() if v.is_open and v.root_view_id == onto.root_view_id
        ]
        if len(stack) >= _MAX_VIEW_STACK:
            raise ApiFailure("push_limit_reached")
        top = stack[-1]
        view_id = self._new_id("V")
        pushed = SimView(
            view_id,
            onto.user_id,
            self._materialize(
                given, view_id=view_id, root_view_id=onto.root_view_id, previous_view_id=top.id
            ),
        )
        self._views[view_id] = pushed
        return pushed

    def _views_update(self, args: JsonDict) -> JsonDict:
        view_id = _str_arg(args, "view_id")
        external_id = _str_arg(args, "external_id")
        if view_id is None and external_id is None:
            raise _missing("view_id")
        target = next(
            (
                v
                for v in self._views.values()
                if v.is_open and (v.id == view_id if view_id else v.external_id == external_id)
            ),
            None,
        )
        if target is None:
            raise ApiFailure("not_found")
        expected_hash = _str_arg(args, "hash")
        if expected_hash is not None and expected_hash != target.hash:
            raise ApiFailure("hash_conflict")
        return {"view": copy.deepcopy(self._update_view(target, args.get("view")).view)}

    def _update_view(self, target: SimView, new_view: Any) -> SimView:
        given = self._checked_view({"view": new_view}, keep=target)
        if not given.get("external_id") and target.external_id:
            given = {**given, "external_id": target.external_id}
        target.history.append(target.view)
        target.view = self._materialize(
            given,
            view_id=target.id,
            root_view_id=target.root_view_id,
            previous_view_id=target.previous_view_id,
            state=copy.deepcopy(target.view.get("state")),
        )
        return target
