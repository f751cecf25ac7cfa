"""The `ghl-bridge` command line as a person runs it (`python -m bot`, same entry point)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "GHL_"))}
    return subprocess.run(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "bot", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_help_lists_every_command(tmp_path: Path) -> None:
    result = _run("--help", cwd=tmp_path)
    assert result.returncode == 0
    for command in ("serve", "sandbox", "demo", "doctor"):
        assert command in result.stdout


def test_doctor_without_settings_exits_2_naming_each_variable(tmp_path: Path) -> None:
    result = _run("doctor", cwd=tmp_path)
    assert result.returncode == 2
    for name in ("SLACK_BOT_TOKEN", "GHL_API_TOKEN", "GHL_LOCATION_ID"):
        assert name in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


def test_unknown_command_is_a_usage_error(tmp_path: Path) -> None:
    result = _run("frobnicate", cwd=tmp_path)
    assert result.returncode == 2
    assert "invalid choice" in result.stderr
