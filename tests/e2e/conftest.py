"""The whole product on loopback: both simulators and a real `ghl-bridge serve`."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from bot.sandbox.stack import SandboxStack


async def eventually(
    check: Callable[[], Any], *, within: float = 8.0, interval: float = 0.05
) -> Any:
    """Poll `check` until it returns something truthy; fail with its last value after `within` s."""
    deadline = time.monotonic() + within
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within} s (last value: {value!r})")
        await asyncio.sleep(interval)


@pytest.fixture
def stack_overrides() -> dict[str, Any]:
    """Settings a test module or test changes (override this fixture)."""
    return {}


@pytest.fixture
async def stack(tmp_path: Path, stack_overrides: dict[str, Any]) -> AsyncIterator[SandboxStack]:
    sandbox = SandboxStack(tmp_path / "bridge.sqlite3", settings_overrides=stack_overrides)
    await sandbox.start()
    try:
        yield sandbox
    finally:
        await sandbox.stop()
