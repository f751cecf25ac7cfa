"""The `ghl-bridge` command line as a person runs it (`python -m bot`, same entry point)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest

from bot.__main__ import package_version, shown_default
from bot.sandbox.slack import SlackSimulator
from bot.settings import Settings
from tests._serve_process import serve_env

ROOT = Path(__file__).resolve().parent.parent


def _run(*args: str, cwd: Path, **extra_env: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "GHL_"))}
    env.update(extra_env)
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


# ----------------------------------------------------------------------------- --version, help


def test_version_prints_the_installed_version(tmp_path: Path) -> None:
    result = _run("--version", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"ghl-bridge {metadata.version('ghl-bridge')}\n"


def test_version_without_the_installed_package_comes_from_pyproject(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A source checkout run without `pip install` has no package metadata.
    def not_installed(name: str) -> str:
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "version", not_installed)
    with (ROOT / "pyproject.toml").open("rb") as file:
        expected = tomllib.load(file)["project"]["version"]
    assert package_version() == expected


def test_serve_help_lists_every_environment_variable_with_meaning_and_default(
    tmp_path: Path,
) -> None:
    result = _run("serve", "--help", cwd=tmp_path, COLUMNS="100")
    assert result.returncode == 0, result.stderr
    assert "-h, --help" in result.stdout
    text = " ".join(result.stdout.split())  # undo the wrapping
    for name, field in Settings.model_fields.items():
        variable = name.upper()
        assert re.search(rf"^  {variable}\s", result.stdout, re.MULTILINE), variable
        assert field.description, f"{variable} has no description in Settings"
        line = f"{variable} {field.description} (default: {shown_default(field)})"
        assert " ".join(line.split()) in text


@pytest.mark.parametrize(
    ("command", "options"),
    [
        ("demo", ("--no-color", "--keep-db", "--step-timeout")),
        ("doctor", ("--manifest",)),
        ("sandbox", ("--webhook-url", "--latency", "--seed")),
    ],
)
def test_each_command_help_still_shows_its_options(
    tmp_path: Path, command: str, options: tuple[str, ...]
) -> None:
    result = _run(command, "--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    for option in options:
        assert option in result.stdout


# ----------------------------------------------------------------------------- start-up cost

HEAVY = ("bot.demo", "bot.doctor", "bot.sandbox")
LOADED_HEAVY = f"sorted(m for m in sys.modules if m.startswith({HEAVY!r}))"

# `ghl-bridge serve` as installed, run to the moment it serves; then it reports what it
# imported and stops itself with SIGTERM, as an operator would.
SERVE_AND_REPORT = f"""
import json, logging, os, signal, sys

class ReportWhenServing(logging.Handler):
    def emit(self, record):
        if "serving on" in record.getMessage():
            print(json.dumps({LOADED_HEAVY}), flush=True)
            os.kill(os.getpid(), signal.SIGTERM)

logging.getLogger("bot.server").addHandler(ReportWhenServing())
from bot.__main__ import main
sys.exit(main(["serve"]))
"""


async def test_serve_imports_neither_demo_doctor_nor_sandbox(tmp_path: Path) -> None:
    async with SlackSimulator() as slack:
        env = serve_env(
            tmp_path / "bridge.sqlite3",
            slack_api_url=slack.api_url,
            slack_bot_token=slack.bot_token,
        )
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            SERVE_AND_REPORT,
            env=env,
            cwd=tmp_path,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
    assert process.returncode == 0, stderr.decode()
    assert "ghl-bridge serving on" in stderr.decode()
    assert json.loads(stdout) == []


def test_serve_module_imports_neither_demo_doctor_nor_sandbox(tmp_path: Path) -> None:
    result = subprocess.run(  # noqa: S603 - our own interpreter
        [sys.executable, "-c", f"import sys, bot.server; print({LOADED_HEAVY})"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "[]\n"
