"""The App Home: views.publish (one Home tab per person, checked like any view) and
chat.getPermalink (a link to a message, and back from a link to the message)."""

from __future__ import annotations

import copy
import re
import secrets
import time
from collections.abc import Mapping
from typing import Any

from bot.sandbox.slack._models import JsonDict, SimView, SlackMessage
from bot.sandbox.slack._validation import (
    MODAL_BLOCKS_MAX,
    _error,
    block_problems,
    view_id_field_problems,
)
from bot.sandbox.slack._workspace_state import WorkspaceState
from bot.sandbox.slack._workspace_support import ApiFailure, _missing, _str_arg

_PERMALINK = re.compile(
    r"^https://(?P<domain>[^/]+)\.slack\.com/archives/(?P<channel>[A-Z0-9]+)/p(?P<ts>\d{7,})"
    r"(?:\?thread_ts=(?P<thread>[\d.]+)&cid=[A-Z0-9]+)?$"
)


def home_view_problems(view: Any) -> list[str]:
    """Every reason Slack would refuse this Home tab ``view`` (empty when it is fine).

    docs.slack.dev reference/views/home-tab-views: type "home", at most 100 blocks, and the
    private_metadata, callback_id and external_id limits of any view; a Home tab has no
    submit or close button.
    """
    pointer = "/view"
    if not isinstance(view, Mapping):
        return [_error("must be an object", pointer)]
    problems: list[str] = []
    if view.get("type") != "home":
        problems.append(_error("must be 'home'", f"{pointer}/type"))
    for button in ("submit", "close"):
        if view.get(button) is not None:
            problems.append(_error(f"a home view has no {button}", f"{pointer}/{button}"))
    problems += view_id_field_problems(view, pointer)
    problems += block_problems(
        view.get("blocks"), pointer=f"{pointer}/blocks", max_blocks=MODAL_BLOCKS_MAX
    )
    return problems


class HomeMethods(WorkspaceState):
    """views.publish and chat.getPermalink, and reading back what they did."""

    # ------------------------------------------------------------------ reading back

    def _homes(self) -> dict[str, SimView]:
        """Each person's Home tab, by user id (made on first use: no __init__ of its own)."""
        homes: dict[str, SimView] | None = self.__dict__.get("_home_views")
        if homes is None:
            homes = self.__dict__["_home_views"] = {}
        return homes

    def home_view(self, user_id: str) -> SimView | None:
        """The Home tab `user_id` sees now (None: the app never published one for them)."""
        return self._homes().get(user_id)

    def view(self, view_id: str) -> SimView | None:
        """A modal, or a person's Home tab, by its id."""
        found = super().view(view_id)
        if found is not None:
            return found
        return next((v for v in self._homes().values() if v.id == view_id), None)

    def message_at(self, permalink: str) -> SlackMessage | None:
        """The message a chat.getPermalink link of this workspace points at (None: none)."""
        match = _PERMALINK.match(permalink)
        if match is None or match["domain"] != self.team_domain:
            return None
        digits = match["ts"]
        ts = f"{digits[:-6]}.{digits[-6:]}"
        message = self.message(match["channel"], ts)
        return None if message is None or message.deleted else message

    # ------------------------------------------------------------------ methods

    def _views_publish(self, args: JsonDict) -> JsonDict:
        user_id = _str_arg(args, "user_id")
        if user_id is None:
            raise _missing("user_id")
        if self.user(user_id) is None:
            raise ApiFailure("user_not_found")
        given = args.get("view")
        problems = home_view_problems(given)
        if problems or not isinstance(given, dict):
            raise ApiFailure("invalid_arguments", messages=problems)
        homes = self._homes()
        current = homes.get(user_id)
        expected_hash = _str_arg(args, "hash")
        if expected_hash is not None and (current is None or expected_hash != current.hash):
            raise ApiFailure("hash_conflict")
        view_id = current.id if current is not None else self._new_id("V")
        view: JsonDict = {
            "id": view_id,
            "team_id": self.team_id,
            "type": "home",
            "blocks": self._with_ids(given.get("blocks") or []),
            "private_metadata": given.get("private_metadata") or "",
            "callback_id": given.get("callback_id") or "",
            "external_id": given.get("external_id") or "",
            "state": {"values": {}},
            "hash": f"{int(time.time())}.{secrets.token_hex(4)}",
            "title": {"type": "plain_text", "text": "View Title", "emoji": True},
            "clear_on_close": False,
            "notify_on_close": False,
            "close": None,
            "submit": None,
            "previous_view_id": None,
            "root_view_id": view_id,
            "app_id": self.app_id,
            "app_installed_team_id": self.team_id,
            "bot_id": self.bot_id,
        }
        if current is None:
            homes[user_id] = SimView(view_id, user_id, view)
        else:
            current.history.append(current.view)
            current.view = view
        return {"view": copy.deepcopy(view)}

    def _chat_get_permalink(self, args: JsonDict) -> JsonDict:
        channel = self._resolve_channel(args, allow_names=False)
        message = self._existing_message(channel, _str_arg(args, "message_ts"))
        link = f"https://{self.team_domain}.slack.com/archives/{channel.id}/p"
        link += message.ts.replace(".", "")
        if message.is_reply and message.thread_ts is not None:
            link += f"?thread_ts={message.thread_ts}&cid={channel.id}"
        return {"channel": channel.id, "permalink": link}
