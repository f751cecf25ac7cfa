"""What Slack handlers are given: the services, built once by `bot.app`."""

from __future__ import annotations

from dataclasses import dataclass

from bot.outbound import OutboundService
from bot.outbound.intents import ComposeIntents
from bot.settings import Settings
from bot.tenancy.accounts import SubAccounts
from bot.tenancy.routing import ChannelRouting


@dataclass(frozen=True, slots=True)
class Deps:
    """Services shared by every handler."""

    settings: Settings
    outbound: OutboundService
    intents: ComposeIntents
    accounts: SubAccounts
    routing: ChannelRouting
