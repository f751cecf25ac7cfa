"""Posting to Slack: thread posts and notices (`poster`), paced per channel (`pacing`)."""

from bot.posting.pacing import ChannelPacer, slack_retry_after
from bot.posting.poster import SlackPoster, SlackPostError

__all__ = ["ChannelPacer", "SlackPostError", "SlackPoster", "slack_retry_after"]
