"""The `ghl-bridge sandbox` entry point: flags, printed settings, serving, clean exit."""

from __future__ import annotations

import argparse
import asyncio
import base64
import codecs
import contextlib
import json
import os
import pty
import shlex
import signal
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import IO, Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from bot.sandbox.highlevel import ADA_LOVELACE_ID
from bot.sandbox.highlevel.cli import add_arguments, run
from tests.sandbox_highlevel.conftest import Receiver

REPO = Path(__file__).resolve().parents[2]
DEADLINE_SECONDS = 60.0  # generous: a loaded machine starts Python slowly
# The start-up lines a person (and these tests) read, in the order they are printed.
STARTUP_LINES = (
    "HighLevel sandbox listening on http://127.0.0.1:",
    "Seeded contacts:",
    "  Ada Lovelace ",
    "Webhooks go to ",
    "Point ghl-bridge at it",
    "GHL_API_URL=",
    "GHL_API_TOKEN=",
    "GHL_LOCATION_ID=",
    "GHL_WEBHOOK_PUBLIC_KEY=",
    "Make a customer reply",
    "  curl -X POST ",
)


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


def settings_of(output: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in output.splitlines() if line.startswith("GHL_"))


def public_key(settings: dict[str, str]) -> Ed25519PublicKey:
    pem = settings["GHL_WEBHOOK_PUBLIC_KEY"].strip('"').replace("\\n", "\n")
    key = load_pem_public_key(pem.encode())
    assert isinstance(key, Ed25519PublicKey)
    return key


async def test_the_printed_curl_example_makes_a_customer_reply(
    capsys: pytest.CaptureFixture[str],
) -> None:
    task = asyncio.create_task(run(parse()))
    output, settings = await printed_settings(capsys, task)
    output += capsys.readouterr().out  # printed with the settings, before run() next awaits
    [example] = [line for line in output.splitlines() if line.startswith("  curl ")]
    words = shlex.split(example)
    url = words[words.index("POST") + 1]
    data = words[words.index("-d") + 1]
    assert url.startswith(settings["GHL_API_URL"] + "/_sandbox/customers/")
    async with httpx.AsyncClient(timeout=30.0) as client:
        made = await client.post(url, content=data, headers={"Content-Type": "application/json"})
        assert made.status_code == 200, made.text
        conversation = made.json()["conversationId"]
        listed = await client.get(
            f"{settings['GHL_API_URL']}/conversations/{conversation}/messages",
            headers={
                "Authorization": f"Bearer {settings['GHL_API_TOKEN']}",
                "Version": "2021-04-15",
            },
        )
    [message] = listed.json()["messages"]["messages"]
    assert (message["direction"], message["body"]) == ("inbound", json.loads(data)["body"])
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


class SandboxProcess:
    """``python -m bot sandbox`` in a real process; its stdout read as it comes."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.output = ""
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    async def wait_for(self, text: str) -> str:
        stdout = self.process.stdout
        assert stdout is not None
        async with asyncio.timeout(DEADLINE_SECONDS):
            while text not in self.output:
                chunk = await stdout.read(4096)
                if not chunk:
                    raise AssertionError(f"sandbox ended before printing {text!r}:\n{self.output}")
                self.output += self._decoder.decode(chunk)
        return self.output

    async def rest(self) -> str:
        """Everything it printed, once it has exited."""
        stdout = self.process.stdout
        assert stdout is not None and self.process.returncode is not None
        self.output += self._decoder.decode(await stdout.read(), final=True)
        return self.output


@contextlib.asynccontextmanager
async def sandbox_process(
    args: Sequence[str], stdin: int | IO[Any], stderr: IO[Any]
) -> AsyncIterator[SandboxProcess]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "sandbox",
        "--port",
        "0",
        *args,
        stdin=stdin,
        stdout=asyncio.subprocess.PIPE,
        stderr=stderr,
        cwd=REPO,
    )
    try:
        yield SandboxProcess(process)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_without_a_terminal_it_prints_the_same_lines_and_serves_on(
    tmp_path: Path,
) -> None:
    with (tmp_path / "stderr.txt").open("w+") as stderr:
        async with sandbox_process([], asyncio.subprocess.DEVNULL, stderr) as sandbox:
            output = await sandbox.wait_for("curl -X POST")
            # stdin is at its end already; with no prompt that must not stop the sandbox.
            settings = settings_of(output)
            async with httpx.AsyncClient(base_url=settings["GHL_API_URL"]) as client:
                contact = await client.get(
                    f"/contacts/{ADA_LOVELACE_ID}",
                    headers={
                        "Authorization": f"Bearer {settings['GHL_API_TOKEN']}",
                        "Version": "2021-07-28",
                    },
                )
            assert contact.status_code == 200
            sandbox.process.send_signal(signal.SIGTERM)
            async with asyncio.timeout(DEADLINE_SECONDS):
                assert await sandbox.process.wait() == 0
            output = await sandbox.rest()
    positions = [output.find(line) for line in STARTUP_LINES]
    assert -1 not in positions and positions == sorted(positions), output
    assert "sandbox> " not in output and "`help`" not in output


async def test_the_terminal_prompt_makes_a_customer_reply(
    tmp_path: Path, receiver: Receiver
) -> None:
    controller, terminal = pty.openpty()
    try:
        with (tmp_path / "stderr.txt").open("w+") as stderr:
            async with sandbox_process(
                ["--webhook-url", receiver.url], terminal, stderr
            ) as sandbox:
                os.close(terminal)
                terminal = -1
                output = await sandbox.wait_for("sandbox> ")
                assert "type `reply ada Is my order ready?` below" in output
                os.write(controller, "reply Ada Ça va ? 👋\n".encode())
                output = await sandbox.wait_for("✓ Ada Lovelace replied by SMS")
                await sandbox.wait_for("(HTTP 200).")
                [body] = receiver.bodies
                [signature] = receiver.signatures
                assert signature is not None
                public_key(settings_of(output)).verify(base64.b64decode(signature), body)
                event = json.loads(body)
                assert (event["type"], event["contactId"]) == ("InboundMessage", ADA_LOVELACE_ID)
                assert event["body"] == "Ça va ? 👋"
                assert f"message {event['messageId']}" in sandbox.output

                os.write(controller, b"reply nobody hello\n")
                await sandbox.wait_for("No contact 'nobody'")
                os.write(controller, b"quit\n")
                async with asyncio.timeout(DEADLINE_SECONDS):
                    assert await sandbox.process.wait() == 0
                assert len(receiver.bodies) == 1
    finally:
        os.close(controller)
        if terminal != -1:
            os.close(terminal)
