"""The Web API methods on messages: identity, conversations, chat and reactions."""

from __future__ import annotations

from bot.sandbox.slack._models import EphemeralMessage, JsonDict, SlackMessage
from bot.sandbox.slack._workspace_state import WorkspaceState
from bot.sandbox.slack._workspace_support import (
    ApiFailure,
    _message_metadata,
    _missing,
    _str_arg,
    _ts_window,
)


class MessageMethods(WorkspaceState):
    """auth.test, users.info, team.info, conversations.*, chat.* and reactions.*."""

    # ------------------------------------------------------------------ methods: identity

    def _auth_test(self, args: JsonDict) -> JsonDict:
        identity: JsonDict = {
            "url": f"https://{self.team_domain}.slack.com/",
            "team": self.team_name,  # the workspace's name, as Slack answers
            "user": self.bot_name,
            "team_id": self.team_id,
            "user_id": self.bot_user_id,
            "bot_id": self.bot_id,
            "is_enterprise_install": False,
        }
        if self.enterprise is not None:
            # docs.slack.dev, auth.test: a workspace of an Enterprise Grid org also names it.
            identity["enterprise_id"] = self.enterprise.id
        return identity

    def _users_info(self, args: JsonDict) -> JsonDict:
        user = self._users.get(_str_arg(args, "user") or "")
        if user is None:
            raise ApiFailure("user_not_found")
        return {"user": user.to_api(self.team_id)}

    def _team_info(self, args: JsonDict) -> JsonDict:
        # docs.slack.dev, team.info: `team` defaults to the token's workspace; a bot token
        # reaches no other workspace here (the stricter reading: team_not_found).
        wanted = _str_arg(args, "team")
        if wanted is not None and wanted != self.team_id:
            raise ApiFailure("team_not_found")
        team: JsonDict = {
            "id": self.team_id,
            "name": self.team_name,
            "url": f"https://{self.team_domain}.slack.com/",
            "domain": self.team_domain,
            "email_domain": "",
            "icon": {"image_default": True},
            "is_verified": False,
        }
        if self.enterprise is not None:
            team |= {"enterprise_id": self.enterprise.id, "enterprise_name": self.enterprise.name}
        return {"team": team}

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

    def _chat_delete(self, args: JsonDict) -> JsonDict:
        channel = self._resolve_channel(args, allow_names=False)
        message = self._existing_message(channel, _str_arg(args, "ts"))
        if message.bot_id != self.bot_id:
            raise ApiFailure("cant_delete_message")
        self._delete(message)
        return {"channel": channel.id, "ts": message.ts}

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
