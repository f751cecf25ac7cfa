"""`ghl-bridge serve` as a real child process: its exit code, its stderr, real signals."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import httpx

from bot.settings import HINTS

SERVING = re.compile(r"ghl-bridge serving on (http://\S+)")
# Nothing the start-up tests do reaches HighLevel; a closed port proves it.
CLOSED_URL = "http://127.0.0.1:9"


def serve_env(
    database: Path, *, slack_api_url: str, slack_bot_token: str, **settings: str
) -> dict[str, str]:
    """The environment of a bridge in HTTP mode on a free port; `settings` add or override."""
    env = {name: value for name, value in os.environ.items() if name not in HINTS}
    env.update(
        {
            "SLACK_BOT_TOKEN": slack_bot_token,
            "SLACK_SIGNING_SECRET": "serve-process-secret",
            "SLACK_API_URL": slack_api_url,
            "GHL_API_TOKEN": "pit-serve-process",
            "GHL_LOCATION_ID": "loc-serve-process",
            "GHL_API_URL": CLOSED_URL,
            "DATABASE_URL": f"sqlite:///{database}",
            "HOST": "127.0.0.1",
            "PORT": "0",
            "GHL_POLL_SECONDS": "0",
            "LOG_LEVEL": "INFO",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update({name.upper(): value for name, value in settings.items()})
    return env


class ServeProcess:
    """`python -m bot serve` with `env` in `cwd`; stderr is collected line by line."""

    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        self._env = env
        self._cwd = cwd
        self.process: asyncio.subprocess.Process | None = None
        self.lines: list[str] = []
        self._new_line = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Self:
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot",
            "serve",
            env=self._env,
            cwd=self._cwd,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        self._reader = asyncio.create_task(self._read())
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self.process is not None
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
        await self.process.wait()
        if self._reader is not None:
            await self._reader

    async def _read(self) -> None:
        assert self.process is not None and self.process.stderr is not None
        async for raw in self.process.stderr:
            self.lines.append(raw.decode(errors="replace").rstrip())
            self._new_line.set()
        self._new_line.set()

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    async def line_matching(
        self, pattern: re.Pattern[str], *, within: float = 30.0
    ) -> re.Match[str]:
        """The first stderr line matching `pattern`; fails if the process ends or time runs out."""
        assert self.process is not None

        async def look() -> re.Match[str]:
            while True:
                self._new_line.clear()
                for line in self.lines:
                    match = pattern.search(line)
                    if match:
                        return match
                if self._reader is not None and self._reader.done():
                    raise AssertionError(f"serve ended without {pattern.pattern!r}:\n{self.output}")
                await self._new_line.wait()

        try:
            return await asyncio.wait_for(look(), within)
        except TimeoutError:
            raise AssertionError(
                f"no {pattern.pattern!r} within {within} s:\n{self.output}"
            ) from None

    async def url(self, *, within: float = 30.0) -> str:
        return (await self.line_matching(SERVING, within=within)).group(1)

    def send_signal(self, signum: signal.Signals) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    async def exit_code(self, *, within: float = 30.0) -> int:
        """Wait for the process to end by itself; its exit code."""
        assert self.process is not None
        try:
            code = await asyncio.wait_for(self.process.wait(), within)
        except TimeoutError:
            raise AssertionError(f"serve still running after {within} s:\n{self.output}") from None
        if self._reader is not None:
            await self._reader
        return code


async def health_answer(
    http: httpx.AsyncClient, url: str, status: int, *, within: float = 20.0
) -> dict[str, Any]:
    """Poll `/healthz` until it answers `status`; its JSON body."""
    last: list[httpx.Response] = []

    async def answered() -> bool:
        last[:] = [await http.get(f"{url}/healthz")]
        return last[0].status_code == status

    deadline = asyncio.get_running_loop().time() + within
    while not await answered():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"/healthz never answered {status}: {last[0].text}")
        await asyncio.sleep(0.1)
    body: dict[str, Any] = last[0].json()
    return body
