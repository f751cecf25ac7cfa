"""Outbound: a checked draft becomes a durable outbox entry; the worker sends it exactly once.

The rule behind every branch here: a customer text sent twice is a serious bug, and a message
that silently disappears is worse. So an entry is written to the store before HighLevel hears of
it; it is resent only when HighLevel certainly did not act on it (429, connection refused); an
outcome we cannot know is looked for in the conversation and, failing that, shown to a person
with a "Resend" button that only a person may press.

- `intents`: ComposeIntents saves each send before its ack; IntentRecovery finishes, after a
  restart, the ones an earlier process acknowledged but did not queue.
- `service`: OutboundService takes sends from Slack and writes the outbox entry; `submission`
  what it takes and answers (SlackOrigin, Submitted, ComposeRejected); `queued_sends` its
  Resend/Retry and Cancel of a send already in the outbox.
- `worker`: OutboxWorker sends entries and reconciles uncertain outcomes.
- `presenter`: SendPresenter shows each send and its status in Slack.
"""

from bot.outbound.entry import Display, build_request
from bot.outbound.presenter import KeyedLocks, SendPresenter
from bot.outbound.service import OutboundService
from bot.outbound.submission import (
    NOT_SAVED,
    ComposeRejected,
    NotInChannelError,
    SlackOrigin,
    Submitted,
)
from bot.outbound.worker import OutboxWorker

__all__ = [
    "NOT_SAVED",
    "ComposeRejected",
    "Display",
    "KeyedLocks",
    "NotInChannelError",
    "OutboundService",
    "OutboxWorker",
    "SendPresenter",
    "SlackOrigin",
    "Submitted",
    "build_request",
]
