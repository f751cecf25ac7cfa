"""The `ghl-bridge demo` command: its options, the sandbox it plays in, and the outcome."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Final

from bot.demo.console import Console, use_color
from bot.demo.pictures import STEP_PICTURES, play_pictures
from bot.demo.script import STEPS, StepFailed, _Script
from bot.demo.slack_text import SlackNames
from bot.demo.tenancy import STEP_SUB_ACCOUNTS, play_sub_accounts
from bot.demo.workspaces import STEP_WORKSPACES, play_workspaces
from bot.sandbox.highlevel import HighLevelSimulator
from bot.sandbox.stack import SandboxStack
from storage import SqliteStore, ThreadRecord

DEFAULT_STEP_TIMEOUT: Final = 10.0
# Fast Slack posting, so the demo never waits on the pacer (Slack's real limit is 1/s/channel).
DEMO_SETTINGS: Final[Mapping[str, Any]] = {"slack_post_rate": 20.0}
EXIT_OK: Final = 0
EXIT_STEP_FAILED: Final = 1
EXIT_USAGE: Final = 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `ghl-bridge demo` options."""
    parser.add_argument(
        "--no-color", action="store_true", help="plain output even on a terminal (or set NO_COLOR)"
    )
    parser.add_argument(
        "--keep-db",
        type=Path,
        metavar="PATH",
        help="keep the bridge's SQLite database at PATH (a new file) to look at afterwards",
    )
    parser.add_argument(
        "--step-timeout",
        type=float,
        default=DEFAULT_STEP_TIMEOUT,
        metavar="SECONDS",
        help=f"how long to wait for each step's effect (default {DEFAULT_STEP_TIMEOUT:g})",
    )


async def run(args: argparse.Namespace, *, highlevel: HighLevelSimulator | None = None) -> int:
    """Play the demo; 0 when every step happened, 1 when one did not, 2 for bad options.

    `highlevel` replaces the stock simulator (its seeded contacts are expected).
    """
    out = Console(sys.stdout, color=use_color(sys.stdout, no_color=bool(args.no_color)))
    keep: Path | None = args.keep_db
    if keep is not None and await asyncio.to_thread(keep.exists):
        out.line(out.red(f"{keep} exists; --keep-db needs a new file (the demo starts empty)."))
        return EXIT_USAGE
    started = time.monotonic()
    with _database_path(keep) as path, _quiet_logging():
        out.line(
            out.bold("ghl-bridge demo") + out.dim(" — simulated Slack and HighLevel, no accounts")
        )
        stack = SandboxStack(path, highlevel=highlevel, settings_overrides=dict(DEMO_SETTINGS))
        try:
            try:
                await stack.start()
            except Exception as exc:  # e.g. no free port, a database that cannot be created
                out.line(out.red(f"✗ The sandbox did not start: {type(exc).__name__}: {exc}"))
                return EXIT_STEP_FAILED
            names = SlackNames.of(stack)
            failure = await _Script(stack, out, names, timeout=float(args.step_timeout)).play()
            out.line()
            out.transcript(stack, names)
        finally:
            await stack.stop()
        threads = await _read_threads(path, stack)
        out.thread_map(threads, names, kept_at=keep)
        # The other parts, each on a bridge and database of its own, beside this one: a
        # picture each way (bot/demo/pictures.py), and the agency's two sub-accounts
        # (bot/demo/tenancy.py) and two Slack workspaces (bot/demo/workspaces.py).
        for step, play, suffix in (
            (STEP_PICTURES, play_pictures, "pictures"),
            (STEP_SUB_ACCOUNTS, play_sub_accounts, "subaccounts"),
            (STEP_WORKSPACES, play_workspaces, "workspaces"),
        ):
            if failure is not None:
                break
            out.line()
            problem = await play(
                path.with_name(f"{path.stem}-{suffix}.sqlite3"),
                out,
                step_seconds=float(args.step_timeout),
            )
            if problem is not None:
                failure = StepFailed(problem, step)
    elapsed = time.monotonic() - started
    out.line()
    if failure is not None:
        out.line(out.red(f"✗ Demo failed: step “{failure.step}” did not happen: {failure.reason}"))
        return EXIT_STEP_FAILED
    out.line(out.green(f"✓ All {len(STEPS) + 3} steps happened in {elapsed:.1f} s."))
    return EXIT_OK


# ---------------------------------------------------------------- database


async def _read_threads(path: Path, stack: SandboxStack) -> list[ThreadRecord]:
    """Every thread the bridge mapped, oldest first (read after the bridge stopped)."""
    location = stack.highlevel.location_id
    found: dict[int, ThreadRecord] = {}
    async with SqliteStore(path) as store:
        for contact_id in list(stack.highlevel.contacts):
            for thread in await store.find_threads_for_contact(location, contact_id):
                found[thread.id] = thread
    return sorted(found.values(), key=lambda t: t.id)


@contextlib.contextmanager
def _database_path(keep: Path | None) -> Iterator[Path]:
    if keep is not None:
        keep.parent.mkdir(parents=True, exist_ok=True)
        yield keep
        return
    with tempfile.TemporaryDirectory(prefix="ghl-bridge-demo-") as folder:
        yield Path(folder) / "demo.sqlite3"


@contextlib.contextmanager
def _quiet_logging() -> Iterator[None]:
    """Only warnings while the demo runs, whatever the loggers' levels, so the transcript stays
    readable; the previous setting comes back afterwards."""
    previous = logging.root.manager.disable
    logging.disable(logging.INFO)
    try:
        yield
    finally:
        logging.disable(previous)
