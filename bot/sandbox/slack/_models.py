"""What the Slack simulator remembers: users, channels, messages, views, calls."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

JsonDict = dict[str, Any]


@dataclass(frozen=True)
class Enterprise:
    """An Enterprise Grid organization: of a workspace inside it, or of an org-wide install."""

    id: str
    name: str

    @property
    def domain(self) -> str:
        return self.name.lower().replace(" ", "-")

    def to_api(self) -> JsonDict:
        return {"id": self.id, "name": self.name}


@dataclass
class SlackUser:
    """A member of the sandbox workspace (``users.info``)."""

    id: str
    name: str
    real_name: str
    tz: str = "America/New_York"
    is_bot: bool = False
    email: str | None = None
    # Workspace roles, as users.info reports them.
    is_admin: bool = False
    is_owner: bool = False
    is_primary_owner: bool = False
    # Profile fields (users.info ``profile``); first/last name default to real_name's words.
    first_name: str | None = None
    last_name: str | None = None
    title: str = ""

    def to_api(self, team_id: str) -> JsonDict:
        try:
            offset = datetime.now(ZoneInfo(self.tz)).utcoffset()
            tz_offset = int(offset.total_seconds()) if offset is not None else 0
        except (ZoneInfoNotFoundError, ValueError):
            tz_offset = 0
        first, _, last = self.real_name.partition(" ")
        profile: JsonDict = {
            "title": self.title,
            "real_name": self.real_name,
            "display_name": self.name,
            "real_name_normalized": self.real_name,
            "display_name_normalized": self.name,
            "first_name": first if self.first_name is None else self.first_name,
            "last_name": last if self.last_name is None else self.last_name,
            "team": team_id,
        }
        if self.email is not None:
            profile["email"] = self.email
        return {
            "id": self.id,
            "team_id": team_id,
            "name": self.name,
            "deleted": False,
            "real_name": self.real_name,
            "tz": self.tz,
            "tz_label": self.tz,
            "tz_offset": tz_offset,
            "is_bot": self.is_bot,
            "is_app_user": False,
            "is_admin": self.is_admin,
            "is_owner": self.is_owner,
            "is_primary_owner": self.is_primary_owner,
            "is_restricted": False,
            "is_ultra_restricted": False,
            "profile": profile,
        }


@dataclass
class SlackChannel:
    """A conversation; ``members`` of None means every workspace member is in it."""

    id: str
    name: str
    is_member: bool = True
    is_private: bool = False
    is_archived: bool = False
    is_im: bool = False
    members: set[str] | None = None
    created: int = field(default_factory=lambda: int(datetime.now(UTC).timestamp()))

    def has_member(self, user_id: str) -> bool:
        return self.members is None or user_id in self.members

    def to_api(self) -> JsonDict:
        return {
            "id": self.id,
            "name": self.name,
            "is_channel": not self.is_private and not self.is_im,
            "is_group": self.is_private,
            "is_im": self.is_im,
            "is_mpim": False,
            "is_private": self.is_private or self.is_im,
            "is_archived": self.is_archived,
            "is_general": False,
            "is_member": self.is_member,
            "created": self.created,
        }


@dataclass(frozen=True)
class MessageEdit:
    """A version of a message that ``chat.update`` replaced."""

    text: str
    blocks: list[JsonDict] | None
    replaced_at: float


@dataclass
class SlackMessage:
    """A message as people in the channel see it."""

    channel: str
    ts: str
    text: str
    user: str
    blocks: list[JsonDict] | None = None
    thread_ts: str | None = None
    bot_id: str | None = None
    app_id: str | None = None
    metadata: JsonDict | None = None
    files: list[JsonDict] | None = None
    """File objects the message carries (an upload shared here), as Slack copies them in."""
    reply_ts: list[str] = field(default_factory=list)
    reactions: dict[str, list[str]] = field(default_factory=dict)
    edits: list[MessageEdit] = field(default_factory=list)
    edited_ts: str | None = None
    deleted: bool = False
    orphaned: bool = False
    """Posted with a well-formed ``thread_ts`` that matched no thread root: Slack answers ok,
    and nobody ever sees the message."""

    @property
    def is_reply(self) -> bool:
        return self.thread_ts is not None and self.thread_ts != self.ts

    @property
    def reply_count(self) -> int:
        return len(self.reply_ts)

    def to_api(
        self, *, reply_users: list[str] | None = None, with_metadata: bool = True
    ) -> JsonDict:
        """The message as the Web API returns it; `with_metadata` False leaves out its message
        metadata (conversations.history/replies without ``include_all_metadata``)."""
        data: JsonDict = {"type": "message", "ts": self.ts, "text": self.text, "user": self.user}
        if self.bot_id is not None:
            data["bot_id"] = self.bot_id
        if self.app_id is not None:
            data["app_id"] = self.app_id
        if self.blocks is not None:
            data["blocks"] = copy.deepcopy(self.blocks)
        if self.metadata is not None and with_metadata:
            data["metadata"] = copy.deepcopy(self.metadata)
        if self.files is not None:
            data["files"] = copy.deepcopy(self.files)
        if self.thread_ts is not None:
            data["thread_ts"] = self.thread_ts
        if self.reply_ts:
            data["thread_ts"] = self.ts
            data["reply_count"] = len(self.reply_ts)
            data["latest_reply"] = self.reply_ts[-1]
            if reply_users is not None:
                data["reply_users"] = reply_users
                data["reply_users_count"] = len(reply_users)
        if self.edited_ts is not None:
            data["edited"] = {"user": self.user, "ts": self.edited_ts}
        if self.reactions:
            data["reactions"] = [
                {"name": name, "users": list(users), "count": len(users)}
                for name, users in self.reactions.items()
            ]
        return data


@dataclass(frozen=True)
class EphemeralMessage:
    """A message only ``user`` saw (``chat.postEphemeral`` or an ephemeral ``respond()``)."""

    channel: str | None
    user: str | None
    ts: str
    text: str
    blocks: list[JsonDict] | None
    thread_ts: str | None
    source: Literal["chat.postEphemeral", "response_url"]


@dataclass(frozen=True)
class ResponseUrlPost:
    """One POST an app made to a ``response_url`` the simulator issued."""

    url: str
    body: JsonDict
    at: float
    accepted: bool
    channel_id: str | None
    user_id: str | None
    message_ts: str | None


@dataclass
class SimView:
    """A modal the simulator opened; ``view`` is what Slack would send back for it."""

    id: str
    user_id: str | None
    view: JsonDict
    is_open: bool = True
    history: list[JsonDict] = field(default_factory=list)

    @property
    def callback_id(self) -> str:
        return str(self.view.get("callback_id", ""))

    @property
    def private_metadata(self) -> str:
        return str(self.view.get("private_metadata", ""))

    @property
    def external_id(self) -> str:
        return str(self.view.get("external_id", ""))

    @property
    def hash(self) -> str:
        return str(self.view["hash"])

    @property
    def title(self) -> str:
        title = self.view.get("title")
        return str(title.get("text", "")) if isinstance(title, Mapping) else ""

    @property
    def root_view_id(self) -> str:
        return str(self.view["root_view_id"])

    @property
    def previous_view_id(self) -> str | None:
        previous = self.view.get("previous_view_id")
        return str(previous) if previous is not None else None

    @property
    def blocks(self) -> list[JsonDict]:
        blocks = self.view.get("blocks")
        return list(blocks) if isinstance(blocks, list) else []


@dataclass(frozen=True)
class RecordedCall:
    """One Web API call the simulator answered (the token itself is never kept)."""

    method: str
    args: Mapping[str, Any]
    at: float
    ok: bool
    error: str | None
    http_status: int
    transport: Literal["json", "form", "query", "raw"]
    """How the arguments came; "raw" is a file's bytes POSTed to its upload URL."""
    team_id: str | None = None
    """The workspace the token (or, for ``oauth.v2.access``, the code) belonged to."""
