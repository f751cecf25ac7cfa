"""Slash commands: `/sendsms` and `/sendemail`."""

from __future__ import annotations

import logging

from slack_bolt.async_app import AsyncAck, AsyncApp

from bot.deps import Deps
from bot.ui.help_builder import usage_blocks, usage_text

log = logging.getLogger(__name__)

HELP_WORDS = frozenset({"help", "-h", "--help", "?"})


def register(app: AsyncApp, deps: Deps) -> None:
    """Attach the slash-command listeners."""

    @app.command("/sendsms")
    async def sendsms(ack: AsyncAck, command: dict[str, str]) -> None:
        text = command.get("text", "").strip()
        if text.lower() in HELP_WORDS:
            await ack(text=usage_text(), blocks=usage_blocks(), response_type="ephemeral")
            return
        # Sending arrives with the outbound work; until then, say so rather than fail silently.
        await ack(
            text="Sending from Slack is not enabled in this build yet. " + usage_text(),
            response_type="ephemeral",
        )

    @app.command("/sendemail")
    async def sendemail(ack: AsyncAck) -> None:
        await ack(
            text="Sending email from Slack is not enabled in this build yet. "
            + usage_text("/sendemail"),
            response_type="ephemeral",
        )
