"""Faults the Slack simulator can be told to inject, for reliability tests."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field


@dataclass
class Fault:
    """How the next ``remaining`` calls of ``method`` go wrong.

    ``status`` 0 means "answer normally" (use it with ``delay_seconds`` alone).
    ``take_effect`` makes the call happen (a message is posted) before the error is answered,
    which is what a timeout or a 5xx after the fact looks like to the caller. ``gate``, when
    set, holds the call until the test sets it (after any delay).
    """

    method: str
    remaining: int
    status: int
    error: str
    retry_after: int | None
    delay_seconds: float
    take_effect: bool
    gate: asyncio.Event | None = field(default=None)

    async def wait(self) -> None:
        """Hold the call as this fault says, before it is handled."""
        if self.delay_seconds > 0:
            await asyncio.sleep(self.delay_seconds)
        if self.gate is not None:
            await self.gate.wait()


class SlackFaults:
    """``sim.faults``: queue failures per Web API method; first queued, first used."""

    def __init__(self) -> None:
        self._queued: list[Fault] = []

    def inject(
        self,
        method: str,
        *,
        times: int = 1,
        status: int = 500,
        error: str = "internal_error",
        retry_after: int | None = None,
        delay_seconds: float = 0.0,
        take_effect: bool = False,
    ) -> Fault:
        if times < 1:
            raise ValueError("times must be >= 1")
        fault = Fault(method, times, status, error, retry_after, delay_seconds, take_effect)
        self._queued.append(fault)
        return fault

    def rate_limit_next(self, method: str, *, times: int = 1, retry_after: int = 1) -> Fault:
        """Answer HTTP 429 ``ratelimited`` with ``Retry-After``."""
        return self.inject(
            method, times=times, status=429, error="ratelimited", retry_after=retry_after
        )

    def server_error_next(
        self, method: str, *, times: int = 1, status: int = 500, take_effect: bool = False
    ) -> Fault:
        """Answer HTTP 5xx ``internal_error`` (optionally after doing the work)."""
        return self.inject(
            method, times=times, status=status, error="internal_error", take_effect=take_effect
        )

    def delay_next(self, method: str, seconds: float, *, times: int = 1) -> Fault:
        """Answer normally, but only after ``seconds``."""
        return self.inject(method, times=times, status=0, error="", delay_seconds=seconds)

    def hold_next(self, method: str) -> asyncio.Event:
        """Hold the next call of ``method`` until the returned event is set, then answer it."""
        fault = self.inject(method, status=0, error="")
        fault.gate = asyncio.Event()
        return fault.gate

    def clear(self) -> None:
        self._queued.clear()

    @property
    def pending(self) -> list[Fault]:
        return [fault for fault in self._queued if fault.remaining > 0]

    def take(self, method: str) -> Fault | None:
        """The fault for this call of ``method``, if one is queued (used by the simulator)."""
        for fault in self._queued:
            if fault.method == method and fault.remaining > 0:
                fault.remaining -= 1
                if fault.remaining == 0:
                    self._queued.remove(fault)
                return fault
        return None
