"""Bolt's authorize for several workspaces: each request runs with its workspace's bot token,
read (and refreshed, once across instances) by `SlackWorkspaces`."""

from __future__ import annotations

import logging

from slack_bolt.authorization import AuthorizeResult
from slack_bolt.authorization.async_authorize import AsyncAuthorize
from slack_bolt.context.async_context import AsyncBoltContext

from bot.posting.errors import SlackPostError
from bot.slack_install.workspaces import SlackWorkspaces
from storage import StoreError

log = logging.getLogger(__name__)


class WorkspaceAuthorize(AsyncAuthorize):
    """The installing workspace's token for each request (None: Bolt answers the person that
    the app is not available there)."""

    def __init__(self, workspaces: SlackWorkspaces) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self._workspaces = workspaces

    async def __call__(
        self,
        *,
        context: AsyncBoltContext,
        enterprise_id: str | None,
        team_id: str | None,
        user_id: str | None,
        actor_enterprise_id: str | None = None,
        actor_team_id: str | None = None,
        actor_user_id: str | None = None,
    ) -> AuthorizeResult | None:
        if not team_id:
            return None  # an org-wide request: no org-wide install is ever stored
        try:
            if team_id == await self._static_team():
                return AuthorizeResult(
                    enterprise_id=enterprise_id,
                    team_id=team_id,
                    bot_token=await self._workspaces.token(team_id),
                    user_id=user_id,
                )
            bot = await self._workspaces.bot(team_id, enterprise_id)
        except StoreError as exc:
            log.warning("could not read Slack workspace %s's install: %s", team_id, exc)
            return None
        if bot is None:
            log.info("a request from Slack workspace %s, where the app is not installed", team_id)
            return None
        return AuthorizeResult(
            enterprise_id=bot.enterprise_id,
            team_id=team_id,
            team=bot.team_name,
            bot_user_id=bot.bot_user_id,
            bot_id=bot.bot_id,
            bot_token=bot.bot_token,
            bot_scopes=bot.bot_scopes,
            user_id=user_id,
        )

    async def _static_team(self) -> str | None:
        try:
            return await self._workspaces.static_team()
        except SlackPostError as exc:
            log.warning("SLACK_BOT_TOKEN's workspace is unknown (auth.test: %s)", exc.error)
            return None
