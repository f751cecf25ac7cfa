"""The sandbox workspace: its state, and the Web API methods acting on it, without HTTP.

Behaviour follows docs.slack.dev method references: error codes, who may post where, threads,
edits, reactions, modals and their trigger ids. Where Slack's behaviour is undocumented the
stricter reading is taken and said so in a comment.
"""

from __future__ import annotations

from collections.abc import Callable

from bot.sandbox.slack._models import JsonDict
from bot.sandbox.slack._workspace_files import FileMethods
from bot.sandbox.slack._workspace_home import HomeMethods
from bot.sandbox.slack._workspace_messages import MessageMethods
from bot.sandbox.slack._workspace_response_urls import ResponseUrls
from bot.sandbox.slack._workspace_support import (
    RESPONSE_URL_MAX_USES,
    RESPONSE_URL_TTL_SECONDS,
    ApiFailure,
)
from bot.sandbox.slack._workspace_views import ViewMethods

__all__ = [
    "RESPONSE_URL_MAX_USES",
    "RESPONSE_URL_TTL_SECONDS",
    "ApiFailure",
    "SlackWorkspace",
]


class SlackWorkspace(FileMethods, MessageMethods, ViewMethods, ResponseUrls, HomeMethods):
    """State of the sandbox workspace plus the Web API methods; see ``SlackSimulator``."""

    # ------------------------------------------------------------------ dispatch

    def _method_table(self) -> dict[str, Callable[[JsonDict], JsonDict]]:
        return {
            "auth.test": self._auth_test,
            "users.info": self._users_info,
            "team.info": self._team_info,
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
            "views.publish": self._views_publish,
            "chat.getPermalink": self._chat_get_permalink,
            "files.info": self._files_info,
            "files.getUploadURLExternal": self._files_get_upload_url_external,
            "files.completeUploadExternal": self._files_complete_upload_external,
        }

    def call_method(self, method: str, args: JsonDict) -> JsonDict:
        """Run one Web API method; returns the success body or raises ``ApiFailure``."""
        handler = self._methods.get(method)
        if handler is None:
            raise ApiFailure("unknown_method")
        return {"ok": True, **handler(args)}
