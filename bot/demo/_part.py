"""What the demo's extra parts share: waiting for what should happen, and finding a send at
HighLevel."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from bot.demo.console import Console
from bot.sandbox.stack import SandboxStack

SEND = ("POST", "/conversations/messages")


class PartFailed(Exception):
    """What did not happen."""


def accepted_send(stack: SandboxStack, text: str) -> Any:
    """HighLevel's record of the send of `text` it accepted, or None."""
    for record in stack.highlevel.requests_to(*SEND):
        body = record.body if isinstance(record.body, dict) else {}
        if record.status == 200 and body.get("message") == text:
            return record
    return None


async def wait_until(check: Callable[[], Any], within: float, missing: str) -> Any:
    """`check()`'s first truthy value within `within` s; PartFailed(`missing`) otherwise."""
    deadline = time.monotonic() + within
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise PartFailed(missing)
        await asyncio.sleep(0.05)


Script = Callable[[SandboxStack, Console, float], Awaitable[str]]


async def play_part(
    step: str, stack: SandboxStack, script: Script, out: Console, *, step_seconds: float
) -> str | None:
    """Start `stack`, run `script` on it as the demo step `step`, stop it; None when it all
    happened, else why not (already printed)."""
    out.begin_step(step)
    try:
        await stack.start()
        detail = await script(stack, out, step_seconds)
    except Exception as exc:  # a broken part is a part that did not happen
        reason = str(exc) if isinstance(exc, PartFailed) else f"{type(exc).__name__}: {exc}"
        out.end_step(step, reason, ok=False)
        return reason
    finally:
        await stack.stop()
    out.end_step(step, detail, ok=True)
    return None
