"""The `ghl-bridge sandbox` entry point: flags, printed settings, serving, clean exit."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from bot.sandbox.highlevel import ADA_LOVELACE_ID
from bot.sandbox.highlevel.cli import add_arguments, run


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(["--port", "0", *argv])


async def printed_settings(
    capsys: pytest.CaptureFixture[str], task: asyncio.Task[int]
) -> tuple[str, dict[str, str]]:
    output = ""
    for _ in range(200):
        output += capsys.readouterr().out
        if "GHL_WEBHOOK_PUBLIC_KEY=" in output:
            break
        assert not task.done(), output
        await asyncio.sleep(0.01)
    settings = dict(line.split("=", 1) for line in output.splitlines() if line.startswith("GHL_"))
    return output, settings


async def test_run_prints_working_settings_and_exits_0_on_sigterm(
    capsys: pytest.CaptureFixture[str],
) -> None:
    task = asyncio.create_task(run(parse("--burst-429", "1")))
    output, settings = await printed_settings(capsys, task)
    assert set(settings) == {
        "GHL_API_URL",
        "GHL_API_TOKEN",
        "GHL_LOCATION_ID",
        "GHL_WEBHOOK_PUBLIC_KEY",
    }
    assert "Ada Lovelace" in output and ADA_LOVELACE_ID in output and "+14155550100" in output
    headers = {"Authorization": f"Bearer {settings['GHL_API_TOKEN']}", "Version": "2021-07-28"}
    async with httpx.AsyncClient(base_url=settings["GHL_API_URL"], headers=headers) as client:
        first = await client.get(f"/contacts/{ADA_LOVELACE_ID}")
        second = await client.get(f"/contacts/{ADA_LOVELACE_ID}")
    assert first.status_code == 429  # --burst-429 1 reached the simulator
    assert second.status_code == 200
    assert second.json()["contact"]["locationId"] == settings["GHL_LOCATION_ID"]

    quoted = settings["GHL_WEBHOOK_PUBLIC_KEY"]
    assert quoted.startswith('"') and quoted.endswith('"') and "\n" not in quoted
    pem = quoted.strip('"').replace("\\n", "\n")
    assert isinstance(load_pem_public_key(pem.encode()), Ed25519PublicKey)

    os.kill(os.getpid(), signal.SIGTERM)  # run() has its own handler installed by now
    assert await asyncio.wait_for(task, 5) == 0
    async with httpx.AsyncClient() as client:
        with pytest.raises(httpx.ConnectError):
            await client.get(settings["GHL_API_URL"] + "/contacts/x")


async def test_signing_key_file_keeps_the_webhook_key_across_runs(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    key_file = tmp_path / "sandbox-signing.pem"
    keys = []
    for _ in range(2):
        task = asyncio.create_task(run(parse("--signing-key-file", str(key_file))))
        _, settings = await printed_settings(capsys, task)
        keys.append(settings["GHL_WEBHOOK_PUBLIC_KEY"])
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert key_file.exists() and keys[0] == keys[1]
    assert key_file.stat().st_mode & 0o777 == 0o600


def test_flags_map_to_settings() -> None:
    args = parse(
        "--token",
        "t-123",
        "--location-id",
        "loc123",
        "--error-rate",
        "0.5",
        "--hang-rate",
        "0.1",
        "--store-then-500-rate",
        "0.2",
        "--latency",
        "0.3",
        "--seed",
        "9",
        "--faults-only-sends",
    )
    assert (args.token, args.location_id, args.seed) == ("t-123", "loc123", 9)
    assert (args.error_rate, args.hang_rate, args.store_then_500_rate) == (0.5, 0.1, 0.2)
    assert args.latency == 0.3 and args.faults_only_sends is True
    defaults = argparse.ArgumentParser()
    add_arguments(defaults)
    parsed = defaults.parse_args([])
    assert (parsed.host, parsed.port, parsed.rate_limit_max) == ("127.0.0.1", 8765, 100)
