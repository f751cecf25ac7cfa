"""What Slack handlers are given: the services, built once by `bot.app`."""

from __future__ import annotations

from dataclasses import dataclass

from bot.contacts import ContactDirectory
from bot.outbound import OutboundService
from bot.outbound.intents import ComposeIntents
from bot.settings import Settings


@dataclass(frozen=True, slots=True)
class Deps:
    """Services shared by every handler."""

    settings: Settings
    outbound: OutboundService
    contacts: ContactDirectory
    intents: ComposeIntents
