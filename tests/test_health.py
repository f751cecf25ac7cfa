"""`/healthz` tells the truth about the database and the workers, and `serve` refuses a database
it cannot write (issue 11, item 7). Real processes, real files, real read-only and full disks
(see tests/_real_failures.py for how, as root or not)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import re
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import bot.app
from bot.sandbox.slack import SlackSimulator
from bot.server import serve
from bot.settings import Settings
from bot.workers import PeriodicWorker, WorkerGroup
from storage import SqliteStore, StoreError, open_store, parse_sqlite_url
from tests._real_failures import ROOT, filled, no_file_writes, small_disk, unwritable
from tests._serve_process import CLOSED_URL, ServeProcess, health_answer, serve_env
from tests.e2e.conftest import eventually

ONE_ERROR_LINE = re.compile(r"^ghl-bridge: ")


@pytest.fixture
async def slack() -> AsyncIterator[SlackSimulator]:
    async with SlackSimulator() as simulator:
        yield simulator


def env_for(database: Path, slack: SlackSimulator) -> dict[str, str]:
    return serve_env(database, slack_api_url=slack.api_url, slack_bot_token=slack.bot_token)


async def make_database(database: Path) -> None:
    """A migrated database, closed cleanly (no WAL files left beside it)."""
    store = await open_store(f"sqlite:///{database}")
    await store.close()


def refused_in_one_line(bridge: ServeProcess) -> str:
    errors = [line for line in bridge.lines if ONE_ERROR_LINE.match(line)]
    assert len(errors) == 1, bridge.output
    assert "Traceback" not in bridge.output
    assert not any("serving on" in line for line in bridge.lines)
    return errors[0]


# ----------------------------------------------------------------------------- start-up


async def test_serve_refuses_a_read_only_database_file(
    tmp_path: Path, slack: SlackSimulator
) -> None:
    database = tmp_path / "bridge.sqlite3"
    await make_database(database)
    with unwritable(database):
        async with ServeProcess(env_for(database, slack), tmp_path) as bridge:
            code = await bridge.exit_code()
    assert code == 2
    line = refused_in_one_line(bridge)
    assert str(database) in line
    assert "readonly" in line
    assert "writable" in line and "DATABASE_URL" in line  # what to do about it


async def test_serve_refuses_a_database_whose_folder_takes_no_new_files(
    tmp_path: Path, slack: SlackSimulator
) -> None:
    # SQLite keeps its WAL beside the database: in a read-only folder it cannot create it.
    folder = tmp_path / "data"
    folder.mkdir()
    database = folder / "bridge.sqlite3"
    await make_database(database)
    with unwritable(folder):
        async with ServeProcess(env_for(database, slack), tmp_path) as bridge:
            code = await bridge.exit_code()
    assert code == 2
    line = refused_in_one_line(bridge)
    assert str(database) in line
    assert "DATABASE_URL" in line


# ----------------------------------------------------------------------------- while running

# A full disk for real needs a mount (root); a file-size limit of 0 does the same for anyone.
DISK_TROUBLE = ["file-size limit 0", *(["full tmpfs"] if ROOT else [])]


@pytest.mark.parametrize("trouble", DISK_TROUBLE)
async def test_healthz_is_503_while_the_database_takes_no_writes_and_200_after(
    tmp_path: Path, slack: SlackSimulator, trouble: str
) -> None:
    with contextlib.ExitStack() as disk:
        folder = tmp_path / "disk"
        if trouble == "full tmpfs":
            disk.enter_context(small_disk(folder))
        else:
            folder.mkdir()
        database = folder / "bridge.sqlite3"
        async with (
            ServeProcess(env_for(database, slack), tmp_path) as bridge,
            httpx.AsyncClient(timeout=10) as http,
        ):
            url = await bridge.url()
            assert (await health_answer(http, url, 200)) == {"status": "ok"}
            assert bridge.process is not None
            broken = (
                filled(folder) if trouble == "full tmpfs" else no_file_writes(bridge.process.pid)
            )
            with broken:
                answer = await health_answer(http, url, 503)
                assert answer["status"] == "unavailable"
                assert answer["reason"].startswith("the database cannot be written (")
                assert "\n" not in answer["reason"]
            # Space again: the next probe's write goes through.
            assert (await health_answer(http, url, 200)) == {"status": "ok"}
            bridge.send_signal(signal.SIGTERM)
            assert await bridge.exit_code() == 0
    assert "Traceback" not in bridge.output


class RecoveryFailsStore(SqliteStore):
    """A real store whose start-up recovery fails as it does on a read-only database."""

    async def recover_after_crash(self) -> int:
        raise StoreError("attempt to write a readonly database")


async def test_a_worker_that_keeps_crashing_makes_healthz_503_and_logs_one_traceback(
    tmp_path: Path,
    slack: SlackSimulator,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def open_failing(database_url: str, **options: Any) -> SqliteStore:
        store = RecoveryFailsStore(parse_sqlite_url(database_url), **options)
        await store.open()
        return store

    monkeypatch.setattr(bot.app, "open_writable_store", open_failing)
    caplog.set_level(logging.INFO, logger="bot.workers")
    settings = Settings(
        _env_file=None,
        slack_bot_token=slack.bot_token,
        slack_signing_secret="secret",
        slack_api_url=slack.api_url,
        ghl_api_token="pit-test",
        ghl_location_id="loc123",
        ghl_api_url=CLOSED_URL,
        database_url=f"sqlite:///{tmp_path / 'bridge.sqlite3'}",
        host="127.0.0.1",
        port=0,
        ghl_poll_seconds=0,
    )
    stop = asyncio.Event()
    ready: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(serve(settings, stop=stop, on_ready=ready.set_result))
    try:
        url = await asyncio.wait_for(ready, 15)
        async with httpx.AsyncClient(timeout=10) as http:
            answer = await health_answer(http, url, 503)
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)
    assert re.fullmatch(
        r"worker outbox keeps failing \(\d+ crashes in a row, last: StoreError\)", answer["reason"]
    ), answer
    crashes = [
        record
        for record in caplog.records
        if record.name == "bot.workers" and record.getMessage().startswith("worker outbox crashed")
    ]
    assert len(crashes) >= 3
    # The traceback once; then one line each, with the count.
    assert [bool(record.exc_info) for record in crashes] == [True] + [False] * (len(crashes) - 1)
    assert "crashed again (2 times in a row, StoreError: attempt to write a readonly database)" in (
        crashes[1].getMessage()
    )
    # Restarted after 1 s, then 2 s: backing off, not crashing every second.
    gaps = [later.created - earlier.created for earlier, later in itertools.pairwise(crashes)]
    assert gaps[0] >= 0.9
    assert gaps[1] >= 1.9


class FlakyStore(SqliteStore):
    """A real store whose writes fail while `broken` (a disk that fills up, then frees)."""

    broken = True

    async def kv_set(self, key: str, value: str) -> None:
        if self.broken:
            raise StoreError("database or disk is full")
        await super().kv_set(key, value)


async def test_a_failing_worker_counts_as_failing_until_it_runs_cleanly_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bot.workers")
    store = FlakyStore(tmp_path / "bridge.sqlite3")
    await store.open()
    writer = PeriodicWorker("writer", lambda: store.kv_set("tick", "1"), interval=0.02)
    group = WorkerGroup(
        [writer], restart_delay=0.05, max_restart_delay=0.2, failing_after=3, stable_after=0.5
    )
    group.start()
    try:
        assert group.problem() is None  # running, no crash yet
        problem = await eventually(group.problem, within=10)
        assert re.fullmatch(
            r"worker writer keeps failing \(\d+ crashes in a row, last: StoreError\)", problem
        )
        store.broken = False
        await eventually(lambda: group.problem() is None, within=10)
        assert await store.kv_get("tick") == "1"
    finally:
        await group.stop()
        await store.close()
    assert group.problem() == "stopping"
    tracebacks = [r for r in caplog.records if r.name == "bot.workers" and r.exc_info]
    assert len(tracebacks) == 1
