"""Slack surfaces: one module per surface, each with ``register(app, deps)``."""

from __future__ import annotations

from slack_bolt.async_app import AsyncApp

from bot.deps import Deps
from handlers import (
    access,
    commands,
    compose,
    compose_options,
    conversation_actions,
    highlevel,
    history,
    home,
    quick_choices,
    shortcuts,
    slack_lifecycle,
    thread_actions,
)


def register_all(app: AsyncApp, deps: Deps) -> None:
    """Attach every surface's listeners to `app`; the allowlist goes first."""
    access.register(app, deps)
    commands.register(app, deps)
    highlevel.register(app, deps)
    compose.register(app, deps)
    compose_options.register(app, deps)
    quick_choices.register(app, deps)
    thread_actions.register(app, deps)
    conversation_actions.register(app, deps)
    history.register(app, deps)
    shortcuts.register(app, deps)
    slack_lifecycle.register(app, deps)
    home.register(app, deps)
