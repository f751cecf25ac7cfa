"""What Slack handlers are given: the services, built once by `bot.app`."""

from __future__ import annotations

from dataclasses import dataclass

from bot.compose.assist import ComposeAssist
from bot.home import HomeTab
from bot.inbox.actions import ConversationActions
from bot.inbox.history import ConversationHistory
from bot.outbound import OutboundService
from bot.outbound.finishing import SendFinisher
from bot.outbound.intents import ComposeIntents
from bot.settings import Settings
from bot.slack_install.lifecycle import WorkspaceLifecycle
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
    # The composer's look-ups (contacts, templates, appointments) and a send's last steps
    # (signature, merge fields, quiet hours).
    assist: ComposeAssist
    finisher: SendFinisher
    # Slack's app_uninstalled and tokens_revoked (None: tests that send no such event).
    workspace_lifecycle: WorkspaceLifecycle | None = None
    # The conversation menu on thread roots (None: tests that use no such menu).
    conversation_actions: ConversationActions | None = None
    # "Earlier messages" on thread roots (None: tests that use no such button).
    history: ConversationHistory | None = None
    # The App Home: waiting conversations and the contact search (None: tests without it).
    home: HomeTab | None = None
