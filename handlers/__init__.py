"""Slack surfaces: one module per surface, each with ``register(app, deps)``."""

from __future__ import annotations

from slack_bolt.async_app import AsyncApp

from bot.deps import Deps
from handlers import commands


def register_all(app: AsyncApp, deps: Deps) -> None:
    """Attach every surface's listeners to `app`."""
    commands.register(app, deps)
