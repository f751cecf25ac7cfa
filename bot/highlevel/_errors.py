"""Errors raised by the HighLevel client.

Every failure of a HighLevel call raises a subclass of ``HighLevelError``::

    HighLevelError            base; also "unexpected response from HighLevel" (a 2xx body that
    |                         does not parse) and unlisted statuses (e.g. 3xx)
    +-- AuthError             401, 403: token invalid/expired or missing scope
    |   +-- AccessLostError   the location's (or agency's) access is gone: refresh token refused,
    |                         app uninstalled, or 401 again with a freshly refreshed token
    +-- InvalidGrantError     /oauth/token answered invalid_grant: used or revoked refresh
    |                         token, or a bad/used authorization code
    +-- NotFoundError         404 (also a cancel-schedule 200 body saying ``status: 404``)
    +-- ValidationError       400, 422 and any other 4xx not listed here (409, 413, 415, ...)
    +-- RateLimitedError      429, or the limiter refusing to wait longer than allowed;
    |                         ``retry_after`` = seconds to wait before trying again
    +-- ServerError           5xx
    +-- UnavailableError      no HTTP answer: connection refused/reset, timeouts, DNS, ...

Attributes on every error:

``status_code``
    HTTP status (or the ``status`` inside a 200 cancel body); ``None`` without an HTTP answer.
``message``
    HighLevel's own message text (a 422 ``message`` array is joined with ``"; "``), or ours
    when HighLevel gave none.
``trace_id``
    HighLevel's ``traceId`` from the error body, when present (quote it to HighLevel support).
``may_have_acted``
    Whether HighLevel may have carried out the request although we got an error. Only ever
    ``True`` for writes (send, upload, upsert, cancel) whose outcome is unknown: a 5xx, a read or
    write timeout, a dropped connection after the request went out, or a 2xx body we could not
    parse. Then **do not resend blindly** — a customer could get the text twice; reconcile
    instead (e.g. list the conversation's messages). ``False`` means HighLevel certainly did not
    act (4xx, 429, connect error/timeout, pool timeout) and the request may be retried. Reads
    always carry ``False``.
"""

from __future__ import annotations

__all__ = [
    "AccessLostError",
    "AuthError",
    "HighLevelError",
    "InvalidGrantError",
    "NotFoundError",
    "RateLimitedError",
    "ServerError",
    "UnavailableError",
    "ValidationError",
    "error_for_status",
]


class HighLevelError(Exception):
    """Base of all HighLevel client errors; see the module docstring for the tree."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        trace_id: str | None = None,
        may_have_acted: bool = False,
    ) -> None:
        self.message = message
        self.status_code = status_code
        self.trace_id = trace_id
        self.may_have_acted = may_have_acted
        super().__init__(message)

    def __str__(self) -> str:
        details: list[str] = []
        if self.status_code is not None:
            details.append(f"HTTP {self.status_code}")
        if self.trace_id:
            details.append(f"traceId {self.trace_id}")
        if self.may_have_acted:
            details.append("HighLevel may have acted on the request")
        return f"{self.message} ({', '.join(details)})" if details else self.message


class AuthError(HighLevelError):
    """401/403: the token is invalid, expired or lacks the scope."""


class AccessLostError(AuthError):
    """The bridge's access to a location is gone until someone installs the app again.

    ``location_id`` names the location (None for an agency-wide loss); ``reason`` is a short
    text for people ("refresh token refused", "app uninstalled", ...), never a token.
    """

    def __init__(
        self,
        message: str,
        *,
        location_id: str | None = None,
        reason: str | None = None,
        status_code: int | None = None,
        trace_id: str | None = None,
    ) -> None:
        super().__init__(message, status_code=status_code, trace_id=trace_id)
        self.location_id = location_id
        self.reason = reason if reason is not None else message


class InvalidGrantError(HighLevelError):
    """400 ``invalid_grant`` from /oauth/token: the refresh token was used or revoked, or the
    authorization code is bad, used or expired. Retrying with the same grant cannot help."""


class NotFoundError(HighLevelError):
    """404: the contact, conversation or message does not exist (in this location)."""


class ValidationError(HighLevelError):
    """400/422 (and other unlisted 4xx): HighLevel rejected the request as invalid."""


class RateLimitedError(HighLevelError):
    """429: too many requests; wait ``retry_after`` seconds."""

    def __init__(
        self,
        message: str,
        *,
        retry_after: float,
        status_code: int | None = None,
        trace_id: str | None = None,
        may_have_acted: bool = False,
    ) -> None:
        super().__init__(
            message, status_code=status_code, trace_id=trace_id, may_have_acted=may_have_acted
        )
        self.retry_after = retry_after


class ServerError(HighLevelError):
    """5xx: HighLevel failed; for writes the outcome is unknown (``may_have_acted``)."""


class UnavailableError(HighLevelError):
    """No HTTP answer: connection refused or dropped, or a timeout."""


def error_for_status(
    status_code: int,
    message: str,
    *,
    trace_id: str | None,
    may_have_acted: bool,
    retry_after: float = 0.0,
) -> HighLevelError:
    """Build the error class that matches an HTTP status."""
    if status_code == 429:
        return RateLimitedError(
            message,
            retry_after=retry_after,
            status_code=status_code,
            trace_id=trace_id,
            may_have_acted=may_have_acted,
        )
    cls: type[HighLevelError]
    if status_code in (401, 403):
        cls = AuthError
    elif status_code == 404:
        cls = NotFoundError
    elif 400 <= status_code < 500:
        cls = ValidationError
    elif status_code >= 500:
        cls = ServerError
    else:
        cls = HighLevelError
    return cls(message, status_code=status_code, trace_id=trace_id, may_have_acted=may_have_acted)
