"""Shared test data and helpers for the sandbox Slack tests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from slack_bolt.async_app import AsyncApp
from slack_bolt.oauth.async_oauth_settings import AsyncOAuthSettings
from slack_sdk.errors import SlackApiError
from slack_sdk.oauth.installation_store import FileInstallationStore
from slack_sdk.oauth.state_store import FileOAuthStateStore
from slack_sdk.web.async_client import AsyncWebClient

from bot.sandbox.slack import SlackSimulator

ALICE = "U0ALICE"
BOB = "U0BOB"
GENERAL = "C0GENERAL"
RANDOM = "C0RANDOM"  # only Alice is a member
OUTSIDE = "C0OUTSIDE"  # public, the bot is not a member
SECRET = "G0SECRET"  # private, the bot is not a member


def seed(sim: SlackSimulator) -> None:
    sim.add_user(ALICE, "alice", "Alice Agent", "America/Chicago")
    sim.add_user(BOB, "bob", "Bob Builder", "Europe/Paris")
    sim.add_channel(GENERAL, "general")
    sim.add_channel(RANDOM, "random", members={ALICE})
    sim.add_channel(OUTSIDE, "outside", is_member=False)
    sim.add_channel(SECRET, "secret", is_member=False, is_private=True)


def modal(
    *,
    title: str = "Send a text",
    blocks: list[dict[str, Any]] | None = None,
    private_metadata: str = "",
    callback_id: str = "send_text",
    **extra: Any,
) -> dict[str, Any]:
    return {
        "type": "modal",
        "callback_id": callback_id,
        "title": {"type": "plain_text", "text": title},
        "submit": {"type": "plain_text", "text": "Send"},
        "private_metadata": private_metadata,
        "blocks": blocks
        if blocks is not None
        else [
            {
                "type": "input",
                "block_id": "body",
                "label": {"type": "plain_text", "text": "Message"},
                "element": {"type": "plain_text_input", "action_id": "text", "multiline": True},
            }
        ],
        **extra,
    }


def section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


async def until(condition: Callable[[], bool], within_seconds: float = 2.0) -> None:
    """Wait for something a handler does after the HTTP answer (Bolt acks first)."""
    deadline = time.monotonic() + within_seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


async def refused(call: Awaitable[Any]) -> dict[str, Any]:
    """The error body of a Web API call that must fail."""
    with pytest.raises(SlackApiError) as failure:
        await call
    data = failure.value.response.data
    assert isinstance(data, dict)
    return data


def bolt_oauth_app(
    sim: SlackSimulator,
    state_dir: Path,
    *,
    signing_secret: str,
    client_id: str | None = None,
    client_secret: str | None = None,
) -> tuple[AsyncApp, FileInstallationStore]:
    """A plain Bolt app that installs through the simulator (its authorize page and
    oauth.v2.access), keeping installs and states in files under `state_dir`."""
    store = FileInstallationStore(base_dir=str(state_dir / "installations"))
    app = AsyncApp(
        signing_secret=signing_secret,
        client=AsyncWebClient(base_url=sim.api_url),
        oauth_settings=AsyncOAuthSettings(
            client_id=client_id or sim.client_id,
            client_secret=client_secret or sim.client_secret,
            scopes=["chat:write", "commands"],
            installation_store=store,
            state_store=FileOAuthStateStore(
                expiration_seconds=600, base_dir=str(state_dir / "states")
            ),
            authorization_url=sim.authorize_url,
            install_page_rendering_enabled=False,
        ),
    )
    return app, store
