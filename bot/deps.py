"""What Slack handlers are given: the services, built once by `bot.app`."""

from __future__ import annotations

from dataclasses import dataclass

from bot.highlevel import HighLevelClient
from bot.settings import Settings
from storage import Store


@dataclass(frozen=True, slots=True)
class Deps:
    """Services shared by every handler."""

    settings: Settings
    store: Store
    highlevel: HighLevelClient
