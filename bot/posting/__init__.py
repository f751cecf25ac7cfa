"""Posting to Slack: thread posts and notices (`poster`), paced per channel (`pacing`), found
again by their marks (`marks`); what a failure means (`errors`)."""

from bot.posting.errors import SlackPostError, WorkspaceGone
from bot.posting.pacing import ChannelPacer, slack_retry_after
from bot.posting.poster import OnePoster, SlackPoster, SlackPosters

__all__ = [
    "ChannelPacer",
    "OnePoster",
    "SlackPostError",
    "SlackPoster",
    "SlackPosters",
    "WorkspaceGone",
    "slack_retry_after",
]
