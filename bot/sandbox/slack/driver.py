"""Sends requests to a Slack app exactly as Slack does: signed slash commands, interactivity
payloads and Events API callbacks, with trigger ids and response_urls from the simulator.

Request shapes follow docs.slack.dev (interactivity/implementing-slash-commands,
reference/interaction-payloads, apis/events-api) and the v0 signing scheme
(authentication/verifying-requests-from-slack): ``X-Slack-Signature: v0=<hex HMAC-SHA256 of
"v0:{timestamp}:{body}">`` with ``X-Slack-Request-Timestamp``.
"""

from __future__ import annotations

from bot.sandbox.slack._driver_base import (
    ACK_DEADLINE_SECONDS,
    DriverResult,
    _with,
    slack_signature,
)
from bot.sandbox.slack._driver_events import EventsApi
from bot.sandbox.slack._driver_external_selects import (
    ExternalSelects,
    OptionsLoadError,
    SuggestedOptions,
)
from bot.sandbox.slack._state_values import build_state_values

__all__ = [
    "ACK_DEADLINE_SECONDS",
    "DriverResult",
    "OptionsLoadError",
    "SlackDriver",
    "SuggestedOptions",
    "build_state_values",
    "slack_signature",
]


class SlackDriver(ExternalSelects, EventsApi):
    """Plays Slack's side of the HTTP conversation with an app at ``app_url``.

    Payloads come from a person of ``workspace`` (default: the simulator's own workspace, or
    the one ``team_id`` names); ``for_workspace`` gives a driver for another workspace.
    """

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
            options_url=self.options_url,
        )

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
        }
        enterprise = self.workspace.enterprise
        if enterprise is not None:
            # docs.slack.dev, implementing-slash-commands: sent from a Grid workspace only.
            fields |= {"enterprise_id": enterprise.id, "enterprise_name": enterprise.name}
        fields |= {
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
