"""The workspace's state: seeding, reading it back, people's posts, shared message helpers."""

from __future__ import annotations

import copy
import itertools
import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from bot.sandbox.slack._files import SlackFile
from bot.sandbox.slack._models import (
    Enterprise,
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
)
from bot.sandbox.slack._workspace_support import (
    _MAX_ATTACHMENTS,
    _THREAD_TS,
    ApiFailure,
    _int_arg,
    _ResponseUrl,
    _str_arg,
    _Trigger,
    _truthy,
    _TsClock,
)


class WorkspaceState:
    """The workspace's people, channels, messages, modals and response_urls."""

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
        enterprise: Enterprise | None = None,
    ) -> None:
        self.team_id = team_id
        self.team_name = team_name or team_domain
        # The Enterprise Grid organization this workspace belongs to (None: a standalone one).
        self.enterprise = enterprise
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
        # Files by id, and upload tickets (files.getUploadURLExternal) -> file id.
        self._files: dict[str, SlackFile] = {}
        self._upload_tickets: dict[str, str] = {}
        # Where file URLs point: the running simulator's base_url (set by start()).
        self.file_base_url: str | None = None
        self._ts = _TsClock()
        self._serial = itertools.count(1)
        # Called with each message chat.postMessage stores, before Slack answers: a test can act
        # in the window where a post exists but the app has not heard of it (kill the app).
        self.after_post: Callable[[SlackMessage], None] | None = None
        self._methods: dict[str, Callable[[JsonDict], JsonDict]] = self._method_table()

    def _method_table(self) -> dict[str, Callable[[JsonDict], JsonDict]]:
        """Web API method name -> handler; ``SlackWorkspace`` lists them."""
        raise NotImplementedError

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
        first_name: str | None = None,
        last_name: str | None = None,
        title: str = "",
    ) -> SlackUser:
        """Add a person; `is_admin` None: an admin when listed in the simulator's `admins`.

        ``first_name``/``last_name`` default to the first word of ``real_name`` and the rest;
        ``title`` (the profile's job title) to "".
        """
        user = SlackUser(
            user_id,
            name,
            real_name or name,
            tz,
            email=email,
            is_admin=user_id in self.admins if is_admin is None else is_admin,
            is_owner=is_owner,
            is_primary_owner=is_primary_owner,
            first_name=first_name,
            last_name=last_name,
            title=title,
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
            problems += self._unreadable_images(blocks)
            if problems:
                raise ApiFailure("invalid_blocks", messages=problems, extra={"errors": problems})
            blocks = self._with_ids(blocks)
        return text, blocks

    def _unreadable_images(self, blocks: list[JsonDict]) -> list[str]:
        """Image blocks whose Slack file the app cannot read (files: `FileMethods`)."""
        return []

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

    def _edit(self, message: SlackMessage, text: str | None, blocks: list[JsonDict] | None) -> None:
        message.edits.append(MessageEdit(message.text, message.blocks, time.time()))
        if text is not None:
            message.text = text
        # chat.update keeps blocks that are not sent again; an empty array removes them.
        message.blocks = blocks or None
        message.edited_ts = self._ts.next()

    def _delete(self, message: SlackMessage) -> None:
        message.deleted = True
        root = (
            self.message(message.channel, message.thread_ts)
            if message.is_reply and message.thread_ts is not None
            else None
        )
        if root is not None and message.ts in root.reply_ts:
            root.reply_ts.remove(message.ts)  # Slack counts only the replies still there
