"""Files between Slack and the customer: what HighLevel takes on which channel (`rules`),
a Slack file picked in the composer (`SlackFileRef`), and the transfers both ways."""

from bot.files.rules import (
    ALLOWED_EXTENSIONS,
    MAX_FILES_PER_SEND,
    SlackFileRef,
    channel_takes_files,
    file_problem,
    upload_limit_bytes,
)

__all__ = [
    "ALLOWED_EXTENSIONS",
    "MAX_FILES_PER_SEND",
    "SlackFileRef",
    "channel_takes_files",
    "file_problem",
    "upload_limit_bytes",
]
