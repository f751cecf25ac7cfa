"""Posting to Slack: thread posts and notices (`poster`), paced per channel (`pacing`)."""

from bot.posting.pacing import ChannelPacer, slack_retry_after
from bot.posting.poster import (
    OnePoster,
    SlackPoster,
    SlackPostError,
    SlackPosters,
    WorkspaceGone,
)

__all__ = [
    "ChannelPacer",
    "OnePoster",
    "SlackPostError",
    "SlackPoster",
    "SlackPosters",
    "WorkspaceGone",
    "slack_retry_after",
]
