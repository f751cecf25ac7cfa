"""A workspace arriving or leaving: what it keeps from before, and Slack's `app_uninstalled`
and `tokens_revoked` events.

Arriving (an install, or SLACK_BOT_TOKEN's workspace once the install flow is on): the
sub-accounts its channels already worked with (linked, or its inbox) become its own, so a
bridge that served one workspace keeps working when it starts serving several.

Uninstalled: its tokens are deleted, its sub-accounts, channel links and inboxes released
(another workspace's admin may claim them), and its work stops: a post still waiting for it is
dropped with a log line (`WorkspaceGone`), while a send already queued to HighLevel still
goes and is recorded. Its threads and messages are kept. Slack sends both events to every
instance's shared URL once; each step is idempotent, so a redelivery changes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from bot.posting.errors import SlackPostError
from bot.slack_install.installation_store import BridgeInstallationStore
from bot.slack_install.workspaces import SlackWorkspaces
from storage import Store

log = logging.getLogger(__name__)


class WorkspaceLifecycle:
    """What the bridge does when a workspace uninstalls the app or revokes its tokens."""

    def __init__(
        self,
        *,
        store: Store,
        workspaces: SlackWorkspaces,
        installs: BridgeInstallationStore | None,
        reload_accounts: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._store = store
        self._workspaces = workspaces
        self._installs = installs
        # Rereads the sub-accounts, so this instance routes by their new owners at once (the
        # others within SubAccounts.RELOAD_SECONDS).
        self._reload_accounts = reload_accounts

    async def adopt(self, team_id: str) -> int:
        """Claim for `team_id` the unowned sub-accounts its channels are linked to or that
        have their inbox there (and, for SLACK_BOT_TOKEN's workspace, GHL_API_TOKEN's);
        how many became its own."""
        static = team_id == await self._static_team()
        links = await self._store.list_channel_links()
        wanted = {link.location_id for link in links if link.team_id == team_id}
        for record in await self._store.list_locations():
            if record.slack_team_id is None and (
                record.inbox_team_id == team_id or (static and record.auth == "pit")
            ):
                wanted.add(record.location_id)
        claimed = 0
        for location_id in sorted(wanted):
            if await self._store.claim_location(location_id, team_id) == team_id:
                claimed += 1
        if claimed:
            log.info(
                "Slack workspace %s: %d sub-accounts it worked with are its own", team_id, claimed
            )
            if self._reload_accounts is not None:
                await self._reload_accounts()
        return claimed

    async def installed(self, team_id: str) -> None:
        """A workspace (re)installed the app: its new token is read afresh, and it adopts."""
        self._workspaces.forget(team_id)
        await self.adopt(team_id)

    async def adopt_for_bot_token(self) -> None:
        """`adopt` for SLACK_BOT_TOKEN's workspace (a periodic job: auth.test may fail)."""
        try:
            team_id = await self._workspaces.static_team()
        except SlackPostError as exc:
            log.warning("SLACK_BOT_TOKEN's workspace is unknown yet (auth.test: %s)", exc.error)
            return
        if team_id:
            await self.adopt(team_id)

    async def uninstalled(self, team_id: str, enterprise_id: str | None) -> None:
        """The app was uninstalled from `team_id`."""
        if team_id == await self._static_team():
            log.error(
                "the app was uninstalled from Slack workspace %s, whose token is "
                "SLACK_BOT_TOKEN: nothing can be posted there until it is installed again "
                "and SLACK_BOT_TOKEN set to the new token",
                team_id,
            )
            return
        if self._installs is not None:
            await self._installs.async_delete_all(enterprise_id=enterprise_id, team_id=team_id)
        self._workspaces.forget(team_id)
        released = await self._store.release_slack_workspace(team_id)
        if self._reload_accounts is not None:
            await self._reload_accounts()
        log.warning(
            "the app was uninstalled from Slack workspace %s: its tokens are deleted, "
            "%d sub-account(s), %d channel link(s) and %d inbox(es) released; posts still "
            "waiting for it are dropped",
            team_id,
            released.locations,
            released.links,
            released.inboxes,
        )

    async def tokens_revoked(
        self, team_id: str, enterprise_id: str | None, *, bot: bool, users: list[str]
    ) -> None:
        """Tokens of `team_id` were revoked: the bot's (`bot`) and those of `users`."""
        if self._installs is None or team_id == await self._static_team():
            if bot:
                log.error(
                    "Slack revoked the bot token of workspace %s (SLACK_BOT_TOKEN): nothing "
                    "can be posted there until it is set to a new token",
                    team_id,
                )
            return
        for user_id in users:
            await self._installs.async_delete_installation(
                enterprise_id=enterprise_id, team_id=team_id, user_id=user_id
            )
        if bot and await self._installs.async_find_bot(
            enterprise_id=enterprise_id, team_id=team_id
        ):
            # (After app_uninstalled, which comes first, there is nothing left to delete.)
            await self._installs.async_delete_bot(enterprise_id=enterprise_id, team_id=team_id)
            self._workspaces.forget(team_id)
            log.warning(
                "Slack revoked the bot token of workspace %s: it is deleted, and nothing is "
                "posted there until the app is installed again",
                team_id,
            )

    async def _static_team(self) -> str | None:
        try:
            return await self._workspaces.static_team()
        except Exception as exc:
            # auth.test failing here is no reason to keep a departed workspace's tokens.
            log.debug("SLACK_BOT_TOKEN's workspace is unknown: %s", exc)
            return None
