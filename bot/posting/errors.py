"""What a Slack Web API failure means for a post: the error the poster raises, its code, and
whether (and after how long) it is tried again."""

from __future__ import annotations

import aiohttp
from slack_sdk.errors import SlackApiError

from bot.posting.pacing import slack_retry_after

__all__ = [
    "NO_ANSWER",
    "SERVER_ERROR_PAUSE_SECONDS",
    "SlackPostError",
    "WorkspaceGone",
    "cannot_look",
    "error_code",
    "passing_failure",
    "retry_after",
    "retry_after_or_no_answer",
]

# After Slack's own failure (HTTP 5xx) a post or update is tried again, after this pause.
SERVER_ERROR_PAUSE_SECONDS = 1.0
# No answer at all: the request may or may not have reached Slack.
NO_ANSWER = (TimeoutError, aiohttp.ClientError)


class SlackPostError(Exception):
    """Slack refused a post; `error` is Slack's code (not_in_channel, channel_not_found, …)."""

    def __init__(self, error: str) -> None:
        super().__init__(error)
        self.error = error


class WorkspaceGone(SlackPostError):
    """The app is not installed in the workspace (any more), or its token cannot be renewed:
    nothing can be shown there. Never worth trying again."""

    def __init__(self, team_id: str, error: str = "workspace_not_installed") -> None:
        super().__init__(error)
        self.team_id = team_id


def retry_after_or_no_answer(exc: BaseException) -> float | None:
    """`retry_after`, and no answer at all is tried again too (after the same pause)."""
    if isinstance(exc, NO_ANSWER):
        return SERVER_ERROR_PAUSE_SECONDS
    return retry_after(exc)


def retry_after(exc: BaseException) -> float | None:
    """Seconds to wait before trying a post or update again; None: do not try again.

    Rate limits (429) are waited out. Slack's own failures (5xx) are tried again too: a post
    that never appears would leave a person not knowing how their send went (a marked post is
    looked for before it is tried again, so it does not show twice).
    """
    wait = slack_retry_after(exc)
    if wait is not None or not isinstance(exc, SlackApiError) or exc.response is None:
        return wait
    status = getattr(exc.response, "status_code", None)
    if isinstance(status, int) and status >= 500:
        return SERVER_ERROR_PAUSE_SECONDS
    return None


def error_code(exc: SlackApiError) -> str:
    data = exc.response.data if exc.response is not None else None
    if isinstance(data, dict):
        return str(data.get("error", "unknown_error"))
    return "unknown_error"


def passing_failure(exc: BaseException) -> bool:
    """Whether a post that failed with `exc` (a SlackPostError, raised from what Slack did)
    may go through later: what the poster itself tries again (no answer, Slack's own failure
    or its rate limit). Anything else (a deleted message, an archived channel, a missing
    scope) fails the same way again."""
    cause = exc.__cause__
    return cause is not None and retry_after_or_no_answer(cause) is not None


def cannot_look(exc: SlackPostError) -> bool:
    """Slack refuses this app any look at the channel's history (an install without the
    history scopes, or a conversation type it cannot read), so a look-up can never succeed."""
    return exc.error in _LOOKUP_REFUSED


_LOOKUP_REFUSED = frozenset(
    {"missing_scope", "not_allowed_token_type", "not_in_channel", "channel_not_found"}
)
