"""A send from Slack as OutboundService takes it: who asked (SlackOrigin), what it became
(Submitted), and why it was turned down (ComposeRejected and its kinds)."""

from __future__ import annotations

from dataclasses import dataclass

from bot.highlevel import Contact
from storage import OutboxEntry

# A send the store could not save (its database busy, locked or full) is not in the outbox, so
# nothing will be sent, and the person must know.
NOT_SAVED = (
    "The bridge could not save it (its database is busy or unavailable), so nothing was sent. "
    "Try again in a moment."
)


@dataclass(frozen=True, slots=True)
class SlackOrigin:
    """Who asked for a send, and where."""

    team_id: str
    channel_id: str
    user_id: str


@dataclass(frozen=True, slots=True)
class Submitted:
    entry: OutboxEntry
    created: bool  # False: this request was seen before (double click, replay) — nothing new
    contact: Contact
    contact_created: bool


class ComposeRejected(Exception):
    """The send cannot be accepted; `message` is for the person, `field` the input it concerns."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class NotInChannelError(ComposeRejected):
    """The bot cannot post in the channel, so nothing is sent (no send behind anyone's back)."""


class NotSavedError(ComposeRejected):
    """The store could not save the send (busy, locked, full): nothing was queued."""
