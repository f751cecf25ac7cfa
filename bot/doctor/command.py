"""The `ghl-bridge doctor` command: its option, the checks in order, and the report."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TextIO

from bot.doctor.accounts import account_checks
from bot.doctor.base import RETENTION, SETTINGS, Check
from bot.doctor.bridge import _running_bridge_check
from bot.doctor.database import _store_checks
from bot.doctor.highlevel import _highlevel_check, _webhook_key_check
from bot.doctor.slack import _app_token_check, _slack_checks
from bot.doctor.workspaces import workspace_checks
from bot.retention import describe_retention
from bot.settings import Settings, SettingsError, load_settings

EXIT_OK = 0
EXIT_BROKEN = 1
EXIT_SETTINGS = 2


# ----------------------------------------------------------------------------- CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--manifest",
        type=Path,
        default=None,
        metavar="PATH",
        help="the Slack app manifest whose bot scopes the token must have "
        "(default: ./manifest.yml, else the one beside the package)",
    )


async def run(args: argparse.Namespace) -> int:
    """Print every check; 0 when all pass, 1 when one fails, 2 when settings do not load."""
    checks = await diagnose(manifest_path=getattr(args, "manifest", None))
    for line in render(checks, unicode=_can_print_marks(sys.stdout)):
        print(line)
    return exit_code(checks)


def exit_code(checks: Iterable[Check]) -> int:
    checks = list(checks)
    if any(c.name == SETTINGS and not c.ok for c in checks):
        return EXIT_SETTINGS
    return EXIT_OK if all(c.ok for c in checks) else EXIT_BROKEN


def render(checks: Iterable[Check], *, unicode: bool = True) -> list[str]:
    """`✓ name — detail`, or `✗ name — detail` plus the fix indented; `OK`/`FAIL` in ASCII."""
    passed, failed, dash = ("✓", "✗", "—") if unicode else ("OK", "FAIL", "-")
    lines: list[str] = []
    for check in checks:
        mark = passed if check.ok else failed
        lines.append(f"{mark} {check.name} {dash} {check.detail}")
        if not check.ok and check.fix:
            lines.append(f"    {check.fix}")
    if unicode:
        return lines
    # Details quote services and paths; keep whatever they contain printable.
    return [line.encode("ascii", "replace").decode("ascii") for line in lines]


def _can_print_marks(stream: TextIO) -> bool:
    try:
        "✓✗—".encode(stream.encoding or "ascii")
    except (UnicodeEncodeError, LookupError):
        return False
    return True


# ----------------------------------------------------------------------------- the checks


async def diagnose(
    settings_loader: Callable[[], Settings] = load_settings,
    *,
    manifest_path: Path | None = None,
) -> list[Check]:
    """Run the checks in order; on unreadable settings, only what is wrong with them."""
    try:
        settings = settings_loader()
    except SettingsError as exc:
        return [_settings_problem(line) for line in exc.lines]
    mode = "Socket Mode" if settings.socket_mode else "HTTP mode"
    checks = [Check(SETTINGS, True, f"loaded ({mode})")]
    if settings.slack_bot_token is not None:
        checks += await _slack_checks(settings, manifest_path)
    checks += await workspace_checks(settings)
    if settings.slack_app_token is not None:
        checks.append(await _app_token_check(settings))
    checks.append(await _highlevel_check(settings))
    checks.append(_webhook_key_check(settings))
    checks += await _store_checks(settings)
    checks.append(Check(RETENTION, True, describe_retention(settings.message_retention_days)))
    checks += await account_checks(settings)
    bridge = await _running_bridge_check(settings)
    if bridge is not None:
        checks.append(bridge)
    return checks


def _settings_problem(line: str) -> Check:
    # Lines read "ghl-bridge: NAME problem: what to set." (bot.settings.describe_errors).
    text = line.removeprefix("ghl-bridge: ").strip()
    problem, sep, hint = text.rpartition(": ")
    if not sep:
        return Check(SETTINGS, False, text, None)
    return Check(SETTINGS, False, problem, hint.rstrip("."))
