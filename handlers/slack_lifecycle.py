"""Slack's `app_uninstalled` and `tokens_revoked` events: a workspace leaving."""

from __future__ import annotations

from typing import Any

from slack_bolt.async_app import AsyncApp, AsyncBoltContext

from bot.deps import Deps


def register(app: AsyncApp, deps: Deps) -> None:
    lifecycle = deps.workspace_lifecycle

    @app.event("app_uninstalled")
    async def app_uninstalled(context: AsyncBoltContext) -> None:
        if lifecycle is not None and context.team_id:
            await lifecycle.uninstalled(context.team_id, context.enterprise_id)

    @app.event("tokens_revoked")
    async def tokens_revoked(event: dict[str, Any], context: AsyncBoltContext) -> None:
        if lifecycle is None or not context.team_id:
            return
        tokens = event.get("tokens") or {}
        await lifecycle.tokens_revoked(
            context.team_id,
            context.enterprise_id,
            bot=bool(tokens.get("bot")),
            users=[str(user) for user in tokens.get("oauth") or []],
        )
