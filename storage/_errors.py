"""Errors raised by every store backend (callers never see sqlite3 exceptions)."""

from __future__ import annotations


class StoreError(Exception):
    """The store could not do what was asked (closed, unusable, unknown schema)."""


class NotFoundError(StoreError, LookupError):
    """No row has the given id."""


class ConflictError(StoreError):
    """A write would break a uniqueness or reference rule, e.g. a Slack thread already mapped."""


class OutboxStateError(StoreError):
    """An outbox transition was asked from a state that does not allow it."""

    def __init__(self, outbox_id: int, state: str, action: str) -> None:
        super().__init__(f"outbox entry {outbox_id} is {state!r}; cannot {action}")
        self.outbox_id = outbox_id
        self.state = state
        self.action = action
