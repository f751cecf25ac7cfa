"""The sandbox workspace: its state, and the Web API methods acting on it, without HTTP.

Behaviour follows docs.slack.dev method references: error codes, who may post where, threads,
edits, reactions, modals and their trigger ids. Where Slack's behaviour is undocumented the
stricter reading is taken and said so in a comment.
"""

from __future__ import annotations

import copy
import itertools
import re
import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from bot.sandbox.slack._models import (
    EphemeralMessage,
    JsonDict,
    MessageEdit,
    ResponseUrlPost,
    SimView,
    SlackChannel,
    SlackMessage,
    SlackUser,
)
from bot.sandbox.slack._ratelimit import TokenBucket
from bot.sandbox.slack._validation import (
    MESSAGE_BLOCKS_MAX,
    block_problems,
    message_text_problems,
    view_problems,
)

_THREAD_TS = re.compile(r"^\d{1,12}\.\d{1,6}$")
_MAX_ATTACHMENTS = 100
_MAX_VIEW_STACK = 3
# docs.slack.dev/interactivity/handling-user-interaction: a response_url works up to five times
# within thirty minutes.
RESPONSE_URL_MAX_USES = 5
RESPONSE_URL_TTL_SECONDS = 30 * 60


class ApiFailure(Exception):
    """A Web API call Slack would refuse: answered ``{"ok": false, "error": ...}``."""

    def __init__(
        self,
        error: str,
        *,
        messages: list[str] | None = None,
        status: int = 200,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(error)
        self.error = error
        self.messages = messages or []
        self.status = status
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})

    def body(self) -> JsonDict:
        body: JsonDict = {"ok": False, "error": self.error, **self.extra}
        if self.messages:
            body["response_metadata"] = {"messages": list(self.messages)}
        return body


@dataclass
class _Trigger:
    user_id: str | None
    view_id: str | None
    expires_at: float
    used: bool = False


@dataclass
class _ResponseUrl:
    url: str
    channel_id: str | None
    user_id: str | None
    message_ts: str | None
    expires_at: float
    uses: int = 0


class _TsClock:
    """Unique, increasing message timestamps shaped like Slack's ("1732430000.000100")."""

    def __init__(self) -> None:
        self._last_us = 0

    def next(self) -> str:
        self._last_us = max(int(time.time() * 1_000_000), self._last_us + 1)
        return f"{self._last_us // 1_000_000}.{self._last_us % 1_000_000:06d}"


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in {"1", "true", "yes"}
    return bool(value)


def _str_arg(args: Mapping[str, Any], name: str) -> str | None:
    value = args.get(name)
    if value is None or value == "":
        return None
    return str(value)


def _int_arg(args: Mapping[str, Any], name: str, default: int) -> int:
    value = args.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except (TypeError, ValueError) as exc:
        raise ApiFailure("invalid_arguments", messages=[f"[ERROR] invalid `{name}`"]) from exc


def _missing(name: str) -> ApiFailure:
    return ApiFailure("invalid_arguments", messages=[f"[ERROR] missing required field: {name}"])


def _ts_window(args: Mapping[str, Any]) -> Callable[[SlackMessage], bool]:
    """conversations.history/replies: `oldest` and `latest`, exclusive unless `inclusive`."""
    try:
        oldest = float(_str_arg(args, "oldest") or 0)
        latest = float(_str_arg(args, "latest") or "inf")
    except ValueError as exc:
        raise ApiFailure("invalid_ts_oldest") from exc
    inclusive = _truthy(args.get("inclusive"))

    def in_window(message: SlackMessage) -> bool:
        ts = float(message.ts)
        if inclusive:
            return oldest <= ts <= latest
        return oldest < ts < latest

    return in_window


def _message_metadata(metadata: Any) -> JsonDict | None:
    """chat.postMessage `metadata`: an object with a string `event_type` and an object
    `event_payload` (docs.slack.dev, chat.postMessage: invalid_metadata_format,
    invalid_metadata_schema)."""
    if metadata is None or metadata == "":
        return None
    if not isinstance(metadata, dict):
        raise ApiFailure("invalid_metadata_format")
    event_type = metadata.get("event_type")
    payload = metadata.get("event_payload")
    if not isinstance(event_type, str) or not event_type or not isinstance(payload, dict):
        raise ApiFailure("invalid_metadata_schema")
    return copy.deepcopy(metadata)


class SlackWorkspace:
    """State of the sandbox workspace plus the Web API methods; see ``SlackSimulator``."""

    def __init__(
        self,
        *,
        team_id: str,
        team_domain: str,
        bot_user_id: str,
        bot_id: str,
        app_id: str,
        bot_name: str,
        post_rate_per_second: float,
        post_burst: int,
        trigger_ttl_seconds: float,
        admins: Iterable[str] = (),
        team_name: str | None = None,
    ) -> None:
        self.team_id = team_id
        self.team_name = team_name or team_domain
        # People made workspace admins when added (users.info is_admin).
        self.admins = frozenset(admins)
        self.team_domain = team_domain
        self.bot_user_id = bot_user_id
        self.bot_id = bot_id
        self.app_id = app_id
        self.bot_name = bot_name
        self.post_rate_per_second = post_rate_per_second
        self.post_burst = post_burst
        self.trigger_ttl_seconds = trigger_ttl_seconds
        self._users: dict[str, SlackUser] = {
            bot_user_id: SlackUser(bot_user_id, bot_name, bot_name, "UTC", is_bot=True)
        }
        self._channels: dict[str, SlackChannel] = {}
        self._messages: dict[str, dict[str, SlackMessage]] = {}
        self._ephemerals: list[EphemeralMessage] = []
        self._views: dict[str, SimView] = {}
        self._used_external_ids: set[str] = set()
        self._triggers: dict[str, _Trigger] = {}
        self._response_urls: dict[str, _ResponseUrl] = {}
        self._response_url_posts: list[ResponseUrlPost] = []
        self._buckets: dict[str, TokenBucket] = {}
        self._ts = _TsClock()
        self._serial = itertools.count(1)
        # Called with each message chat.postMessage stores, before Slack answers: a test can act
        # in the window where a post exists but the app has not heard of it (kill the app).
        self.after_post: Callable[[SlackMessage], None] | None = None
        self._methods: dict[str, Callable[[JsonDict], JsonDict]] = {
            "auth.test": self._auth_test,
            "users.info": self._users_info,
            "conversations.info": self._conversations_info,
            "conversations.join": self._conversations_join,
            "conversations.history": self._conversations_history,
            "conversations.replies": self._conversations_replies,
            "chat.postMessage": self._chat_post_message,
            "chat.postEphemeral": self._chat_post_ephemeral,
            "chat.update": self._chat_update,
            "chat.delete": self._chat_delete,
            "reactions.add": self._reactions_add,
            "reactions.remove": self._reactions_remove,
            "views.open": self._views_open,
            "views.push": self._views_push,
            "views.update": self._views_update,
        }

    # ------------------------------------------------------------------ seeding

    def add_user(
        self,
        user_id: str,
        name: str,
        real_name: str | None = None,
        tz: str = "America/New_York",
        *,
        email: str | None = None,
        is_admin: bool | None = None,
        is_owner: bool = False,
        is_primary_owner: bool = False,
    ) -> SlackUser:
        """Add a person; `is_admin` None: an admin when listed in the simulator's `admins`."""
        user = SlackUser(
            user_id,
            name,
            real_name or name,
            tz,
            email=email,
            is_admin=user_id in self.admins if is_admin is None else is_admin,
            is_owner=is_owner,
            is_primary_owner=is_primary_owner,
        )
        self._users[user_id] = user
        return user

    def add_channel(
        self,
        channel_id: str,
        name: str,
        is_member: bool = True,
        is_private: bool = False,
        *,
        members: set[str] | None = None,
        is_archived: bool = False,
    ) -> SlackChannel:
        channel = SlackChannel(
            channel_id,
            name.lstrip("#"),
            is_member=is_member,
            is_private=is_private,
            is_archived=is_archived,
            members=set(members) if members is not None else None,
        )
        self._channels[channel_id] = channel
        self._messages.setdefault(channel_id, {})
        return channel

    def user(self, user_id: str) -> SlackUser | None:
        return self._users.get(user_id)

    def users(self) -> list[SlackUser]:
        """Everyone in the workspace, the bot first, then in the order they were added."""
        return list(self._users.values())

    def channel(self, channel_id: str) -> SlackChannel | None:
        return self._channels.get(channel_id)

    # ------------------------------------------------------------------ reading, as a person

    def message(self, channel: str, ts: str) -> SlackMessage | None:
        """Any stored message (deleted and orphaned ones included)."""
        return self._messages.get(channel, {}).get(ts)

    def channel_messages(self, channel: str) -> list[SlackMessage]:
        """Top-level messages, oldest first, as the channel shows them."""
        return [
            m
            for m in self._messages.get(channel, {}).values()
            if not m.is_reply and not m.deleted and not m.orphaned
        ]

    def thread(self, channel: str, thread_ts: str) -> list[SlackMessage]:
        """The root and its replies, oldest first (empty when there is no such root)."""
        root = self.message(channel, thread_ts)
        if root is None or root.is_reply or root.orphaned:
            return []
        replies = [self._messages[channel][ts] for ts in root.reply_ts]
        return [m for m in [root, *replies] if not m.deleted]

    def orphaned_replies(self, channel: str | None = None) -> list[SlackMessage]:
        """Replies Slack accepted with a ``thread_ts`` that matched no root; nobody sees them."""
        return [
            m
            for ch, messages in self._messages.items()
            if channel is None or ch == channel
            for m in messages.values()
            if m.orphaned
        ]

    def ephemerals(
        self, channel: str | None = None, user: str | None = None
    ) -> list[EphemeralMessage]:
        return [
            e
            for e in self._ephemerals
            if (channel is None or e.channel == channel) and (user is None or e.user == user)
        ]

    def open_views(self, user: str | None = None) -> list[SimView]:
        """Modals still open, oldest first, with their current content."""
        return [
            v for v in self._views.values() if v.is_open and (user is None or v.user_id == user)
        ]

    def view(self, view_id: str) -> SimView | None:
        return self._views.get(view_id)

    def response_url_posts(
        self,
        url: str | None = None,
        *,
        channel: str | None = None,
        user: str | None = None,
    ) -> list[ResponseUrlPost]:
        return [
            p
            for p in self._response_url_posts
            if (url is None or p.url == url)
            and (channel is None or p.channel_id == channel)
            and (user is None or p.user_id == user)
        ]

    # ------------------------------------------------------------------ what people do

    def post_as_user(
        self,
        channel: str,
        user: str,
        text: str,
        *,
        thread_ts: str | None = None,
        blocks: list[JsonDict] | None = None,
    ) -> SlackMessage:
        """A person writes in a channel (or a thread); returns the stored message."""
        if channel not in self._channels:
            raise ValueError(f"unknown channel {channel}; add_channel() it first")
        root = None
        if thread_ts is not None:
            root = self.message(channel, thread_ts)
            if root is None or root.is_reply or root.deleted:
                raise ValueError(f"no thread root {thread_ts} in {channel}")
        message = SlackMessage(
            channel=channel,
            ts=self._ts.next(),
            text=text,
            user=user,
            blocks=copy.deepcopy(blocks),
            thread_ts=thread_ts,
        )
        self._store(message, root)
        return message

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

    # ------------------------------------------------------------------ dispatch

    def call_method(self, method: str, args: JsonDict) -> JsonDict:
        """Run one Web API method; returns the success body or raises ``ApiFailure``."""
        handler = self._methods.get(method)
        if handler is None:
            raise ApiFailure("unknown_method")
        return {"ok": True, **handler(args)}

    # ------------------------------------------------------------------ helpers

    def _new_id(self, prefix: str) -> str:
        return f"{prefix}{next(self._serial):010d}"

    def _store(self, message: SlackMessage, root: SlackMessage | None) -> None:
        self._messages.setdefault(message.channel, {})[message.ts] = message
        if root is not None:
            root.reply_ts.append(message.ts)

    def _reply_users(self, root: SlackMessage) -> list[str]:
        users: list[str] = []
        for ts in root.reply_ts:
            reply = self._messages[root.channel][ts]
            if not reply.deleted and reply.user not in users:
                users.append(reply.user)
        return users

    def _api_message(self, message: SlackMessage, *, with_metadata: bool = True) -> JsonDict:
        return message.to_api(
            reply_users=self._reply_users(message) if message.reply_ts else None,
            with_metadata=with_metadata,
        )

    def _resolve_channel(self, args: Mapping[str, Any], *, allow_names: bool) -> SlackChannel:
        raw = _str_arg(args, "channel")
        if raw is None:
            raise ApiFailure("channel_not_found")
        channel = self._channels.get(raw)
        if channel is None and allow_names:
            wanted = raw.lstrip("#")
            channel = next((c for c in self._channels.values() if c.name == wanted), None)
            if channel is None and raw in self._users:
                channel = self._direct_message_channel(raw)
        # A private conversation the bot is not in is invisible to it.
        if channel is None or ((channel.is_private or channel.is_im) and not channel.is_member):
            raise ApiFailure("channel_not_found")
        return channel

    def _direct_message_channel(self, user_id: str) -> SlackChannel:
        channel_id = f"D{user_id.lstrip('UW')}"
        channel = self._channels.get(channel_id)
        if channel is None:
            channel = self.add_channel(channel_id, user_id, members={user_id, self.bot_user_id})
            channel.is_im = True
        return channel

    def _require_member(self, channel: SlackChannel) -> None:
        if not channel.is_member:
            raise ApiFailure("not_in_channel")

    def _existing_message(self, channel: SlackChannel, ts: str | None) -> SlackMessage:
        message = self.message(channel.id, ts) if ts is not None else None
        if message is None or message.deleted:
            raise ApiFailure("message_not_found")
        return message

    def _message_content(
        self, args: Mapping[str, Any], *, require_content: bool
    ) -> tuple[str | None, list[JsonDict] | None]:
        text = args.get("text")
        text = None if text is None else str(text)
        blocks = args.get("blocks")
        attachments = args.get("attachments")
        if require_content and not text and not blocks and not attachments:
            raise ApiFailure("no_text")
        too_long = message_text_problems(text)
        if too_long:
            raise ApiFailure("msg_too_long", messages=too_long)
        if isinstance(attachments, list) and len(attachments) > _MAX_ATTACHMENTS:
            raise ApiFailure("too_many_attachments")
        if blocks is not None:
            problems = block_problems(blocks, pointer="/blocks", max_blocks=MESSAGE_BLOCKS_MAX)
            if problems:
                raise ApiFailure("invalid_blocks", messages=problems, extra={"errors": problems})
            blocks = self._with_ids(blocks)
        return text, blocks

    def _with_ids(self, blocks: list[JsonDict]) -> list[JsonDict]:
        """Slack fills in a ``block_id`` (and an ``action_id``) the app left out."""
        filled = copy.deepcopy(blocks)
        taken = {b.get("block_id") for b in filled}
        for block in filled:
            if "block_id" not in block:
                block_id = secrets.token_urlsafe(3)
                while block_id in taken:
                    block_id = secrets.token_urlsafe(3)
                block["block_id"] = block_id
                taken.add(block_id)
            elements = list(block.get("elements") or []) if block.get("type") == "actions" else []
            if isinstance(block.get("element"), dict):
                elements.append(block["element"])
            if isinstance(block.get("accessory"), dict):
                elements.append(block["accessory"])
            for element in elements:
                if isinstance(element, dict) and "type" in element:
                    element.setdefault("action_id", secrets.token_urlsafe(3))
        return filled

    def _take_post_token(self, channel_key: str) -> None:
        bucket = self._buckets.get(channel_key)
        if bucket is None:
            bucket = TokenBucket(self.post_rate_per_second, self.post_burst)
            self._buckets[channel_key] = bucket
        wait = bucket.try_take()
        if wait is not None:
            raise ApiFailure("ratelimited", status=429, headers={"Retry-After": str(wait)})

    def _bot_message(
        self,
        channel: SlackChannel,
        text: str | None,
        blocks: list[JsonDict] | None,
        *,
        thread_ts: str | None,
        metadata: JsonDict | None = None,
    ) -> SlackMessage:
        root: SlackMessage | None = None
        orphaned = False
        if thread_ts is not None:
            if not _THREAD_TS.match(thread_ts):
                raise ApiFailure(
                    "invalid_thread_ts", messages=[f"[ERROR] {thread_ts} is not a valid thread_ts"]
                )
            root = self.message(channel.id, thread_ts)
            # Slack answers ok for a well-formed thread_ts matching no root (or naming a reply
            # instead of its root), and the reply is then shown nowhere; keep that visible here.
            if root is None or root.is_reply or root.deleted or root.orphaned:
                root, orphaned = None, True
        message = SlackMessage(
            channel=channel.id,
            ts=self._ts.next(),
            text=text or "",
            user=self.bot_user_id,
            blocks=blocks,
            thread_ts=thread_ts,
            bot_id=self.bot_id,
            app_id=self.app_id,
            metadata=metadata,
            orphaned=orphaned,
        )
        self._store(message, root)
        return message

    def _page(
        self, messages: list[SlackMessage], args: Mapping[str, Any], default_limit: int
    ) -> JsonDict:
        limit = max(1, min(_int_arg(args, "limit", default_limit), 1000))
        cursor = _str_arg(args, "cursor")
        start = 0
        if cursor is not None:
            if not cursor.startswith("next:"):
                raise ApiFailure("invalid_cursor")
            start = _int_arg({"cursor": cursor[5:]}, "cursor", 0)
        page = messages[start : start + limit]
        has_more = start + limit < len(messages)
        # Message metadata comes back only when asked for (docs.slack.dev, conversations.history
        # and conversations.replies: include_all_metadata, default false).
        with_metadata = _truthy(args.get("include_all_metadata"))
        return {
            "messages": [self._api_message(m, with_metadata=with_metadata) for m in page],
            "has_more": has_more,
            "response_metadata": {"next_cursor": f"next:{start + limit}" if has_more else ""},
        }

    # ------------------------------------------------------------------ methods: identity

    def _auth_test(self, args: JsonDict) -> JsonDict:
        return {
            "url": f"https://{self.team_domain}.slack.com/",
            "team": self.team_domain,
            "user": self.bot_name,
            "team_id": self.team_id,
            "user_id": self.bot_user_id,
            "bot_id": self.bot_id,
            "is_enterprise_install": False,
        }

    def _users_info(self, args: JsonDict) -> JsonDict:
        user = self._users.get(_str_arg(args, "user") or "")
        if user is None:
            raise ApiFailure("user_not_found")
        return {"user": user.to_api(self.team_id)}

    # ------------------------------------------------------------------ methods: conversations

    def _conversations_info(self, args: JsonDict) -> JsonDict:
        return {"channel": self._resolve_channel(args, allow_names=False).to_api()}

    def _conversations_join(self, args: JsonDict) -> JsonDict:
        raw = _str_arg(args, "channel")
        channel = self._channels.get(raw or "")
        if channel is None:
            raise ApiFailure("channel_not_found")
        if channel.is_private or channel.is_im:
            raise ApiFailure("method_not_supported_for_channel_type")
        if channel.is_archived:
            raise ApiFailure("is_archived")
        if channel.is_member:
            return {
                "channel": channel.to_api(),
                "warning": "already_in_channel",
                "response_metadata": {"warnings": ["already_in_channel"]},
            }
        channel.is_member = True
        return {"channel": channel.to_api()}

    def _conversations_history(self, args: JsonDict) -> JsonDict:
        channel = self._resolve_channel(args, allow_names=False)
        self._require_member(channel)
        in_window = _ts_window(args)
        newest_first = reversed(self.channel_messages(channel.id))
        selected = [m for m in newest_first if in_window(m)]
        return {"pin_count": 0, **self._page(selected, args, 100)}

    def _conversations_replies(self, args: JsonDict) -> JsonDict:
        channel = self._resolve_channel(args, allow_names=False)
        self._require_member(channel)
        ts = _str_arg(args, "ts")
        if ts is None:
            raise _missing("ts")
        in_window = _ts_window(args)
        message = self.message(channel.id, ts)
        if message is None or message.deleted or message.orphaned:
            raise ApiFailure("thread_not_found")
        root_ts = message.thread_ts if message.is_reply and message.thread_ts else message.ts
        # oldest/latest bound the root too (undocumented whether Slack always includes it; the
        # stricter reading).
        selected = [m for m in self.thread(channel.id, root_ts) if in_window(m)]
        return self._page(selected, args, 1000)

    # ------------------------------------------------------------------ methods: chat

    def _chat_post_message(self, args: JsonDict) -> JsonDict:
        channel = self._resolve_channel(args, allow_names=True)
        self._require_member(channel)
        if channel.is_archived:
            raise ApiFailure("is_archived")
        self._take_post_token(channel.id)
        text, blocks = self._message_content(args, require_content=True)
        message = self._bot_message(
            channel,
            text,
            blocks,
            thread_ts=_str_arg(args, "thread_ts"),
            metadata=_message_metadata(args.get("metadata")),
        )
        if self.after_post is not None:
            self.after_post(message)
        return {"channel": channel.id, "ts": message.ts, "message": self._api_message(message)}

    def _chat_post_ephemeral(self, args: JsonDict) -> JsonDict:
        channel = self._resolve_channel(args, allow_names=True)
        self._require_member(channel)
        user_id = _str_arg(args, "user")
        if user_id is None or user_id not in self._users:
            raise ApiFailure("user_not_found")
        if not channel.has_member(user_id):
            raise ApiFailure("user_not_in_channel")
        text, blocks = self._message_content(args, require_content=True)
        ephemeral = EphemeralMessage(
            channel=channel.id,
            user=user_id,
            ts=self._ts.next(),
            text=text or "",
            blocks=blocks,
            thread_ts=_str_arg(args, "thread_ts"),
            source="chat.postEphemeral",
        )
        self._ephemerals.append(ephemeral)
        return {"message_ts": ephemeral.ts}

    def _chat_update(self, args: JsonDict) -> JsonDict:
        channel = self._resolve_channel(args, allow_names=False)
        message = self._existing_message(channel, _str_arg(args, "ts"))
        if message.bot_id != self.bot_id:
            raise ApiFailure("cant_update_message")
        text, blocks = self._message_content(args, require_content=False)
        self._edit(message, text, blocks if "blocks" in args else message.blocks)
        return {
            "channel": channel.id,
            "ts": message.ts,
            "text": message.text,
            "message": self._api_message(message),
        }

    def _edit(self, message: SlackMessage, text: str | None, blocks: list[JsonDict] | None) -> None:
        message.edits.append(MessageEdit(message.text, message.blocks, time.time()))
        if text is not None:
            message.text = text
        # chat.update keeps blocks that are not sent again; an empty array removes them.
        message.blocks = blocks or None
        message.edited_ts = self._ts.next()

    def _chat_delete(self, args: JsonDict) -> JsonDict:
        channel = self._resolve_channel(args, allow_names=False)
        message = self._existing_message(channel, _str_arg(args, "ts"))
        if message.bot_id != self.bot_id:
            raise ApiFailure("cant_delete_message")
        self._delete(message)
        return {"channel": channel.id, "ts": message.ts}

    def _delete(self, message: SlackMessage) -> None:
        message.deleted = True
        root = (
            self.message(message.channel, message.thread_ts)
            if message.is_reply and message.thread_ts is not None
            else None
        )
        if root is not None and message.ts in root.reply_ts:
            root.reply_ts.remove(message.ts)  # Slack counts only the replies still there

    # ------------------------------------------------------------------ methods: reactions

    def _reaction_target(self, args: JsonDict) -> tuple[SlackMessage, str]:
        channel = self._resolve_channel(args, allow_names=False)
        self._require_member(channel)
        message = self._existing_message(channel, _str_arg(args, "timestamp"))
        name = (_str_arg(args, "name") or "").strip(":")
        if not name:
            raise ApiFailure("invalid_name")
        return message, name

    def _reactions_add(self, args: JsonDict) -> JsonDict:
        message, name = self._reaction_target(args)
        users = message.reactions.setdefault(name, [])
        if self.bot_user_id in users:
            raise ApiFailure("already_reacted")
        users.append(self.bot_user_id)
        return {}

    def _reactions_remove(self, args: JsonDict) -> JsonDict:
        message, name = self._reaction_target(args)
        users = message.reactions.get(name, [])
        if self.bot_user_id not in users:
            raise ApiFailure("no_reaction")
        users.remove(self.bot_user_id)
        if not users:
            del message.reactions[name]
        return {}

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
