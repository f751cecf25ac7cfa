"""What a Slack Web API failure means for a post: its error code, and whether (and after how
long) it is tried again."""

from __future__ import annotations

import aiohttp
from slack_sdk.errors import SlackApiError

from bot.posting.pacing import slack_retry_after

# After Slack's own failure (HTTP 5xx) a post or update is tried again, after this pause.
SERVER_ERROR_PAUSE_SECONDS = 1.0
# No answer at all: the request may or may not have reached Slack.
_NO_ANSWER = (TimeoutError, aiohttp.ClientError)


def _retry_after_or_no_answer(exc: BaseException) -> float | None:
    """`_retry_after`, and no answer at all is tried again too (after the same pause)."""
    if isinstance(exc, _NO_ANSWER):
        return SERVER_ERROR_PAUSE_SECONDS
    return _retry_after(exc)


def _retry_after(exc: BaseException) -> float | None:
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


def _code(exc: SlackApiError) -> str:
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
    return cause is not None and _retry_after_or_no_answer(cause) is not None
