"""The ``ghl-bridge sandbox`` terminal prompt: a person types a line, a customer replies."""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import os
import re
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from ._models import SimContact
    from ._simulator import HighLevelSimulator

__all__ = ["HELP", "SandboxPrompt", "contact_line", "run_prompt", "stdin_prompt_fd"]

MARKER = "sandbox> "
HELP = """\
Commands:
  reply [--channel CH] WHO TEXT
      WHO writes TEXT: stored in the conversation (the bridge finds it by polling)
      and sent as a signed InboundMessage webhook when --webhook-url is set.
      WHO: a contact id, phone, email, first name or "Full Name".
      CH: SMS (default with a phone), Email (default without), WhatsApp, ...
  contacts   list the sandbox's contacts
  locations  list the sub-accounts: id, name, token, whether the app is installed
  install LOCATION / uninstall LOCATION
      the Marketplace app is installed on / removed from LOCATION (an id, number or
      name): a signed INSTALL / UNINSTALL webhook; uninstall revokes its OAuth tokens.
  help       this list
  quit       stop the sandbox (as Ctrl-C and Ctrl-D do)"""
USAGE = "Usage: reply [--channel CH] WHO TEXT   e.g. reply ada Is my order ready?"
_CHANNEL_OPTION = re.compile(r"(?:-c|--channel)(?:\s+|=)(\S+)\s*(.*)", re.DOTALL)
# Long enough for a slow bridge to answer the webhook, short enough for a person to wait.
WEBHOOK_WAIT_SECONDS = 11.0


def contact_line(contact: SimContact) -> str:
    return (
        f"  {contact.name:<18} phone={contact.phone or '-':<14} "
        f"email={contact.email or '-':<22} id={contact.id}"
    )


def stdin_prompt_fd(stdin: TextIO | None) -> int | None:
    """The descriptor to read commands from, or None when nobody types there.

    Only a terminal in the foreground: tests and CI (no stdin, a pipe, /dev/null) get no prompt,
    and a sandbox started with ``&`` must not be stopped by SIGTTIN for reading its terminal.
    """
    try:
        if stdin is None or not stdin.isatty():
            return None
        fd = stdin.fileno()
    except (AttributeError, OSError, ValueError):
        return None
    try:
        if os.tcgetpgrp(fd) != os.getpgrp():
            return None
    except OSError:
        pass  # a terminal that is not ours to control: reading it sends no SIGTTIN
    except AttributeError:
        return None  # no job control here (Windows): and no event-loop reader for stdin either
    return fd


class SandboxPrompt:
    """Runs one typed line at a time and prints what happened."""

    def __init__(self, sim: HighLevelSimulator, out: TextIO, stop: asyncio.Event) -> None:
        self.sim = sim
        self.out = out
        self.stop = stop

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    async def execute(self, line: str) -> None:
        command, _, rest = line.strip().partition(" ")
        match command.lower():
            case "":
                return
            case "help" | "?":
                self.say(HELP)
            case "contacts":
                for contact in self.sim.contacts.values():
                    self.say(contact_line(contact))
            case "reply":
                await self._reply(rest)
            case "locations":
                for location in self.sim.locations.values():
                    state = "installed" if location.installed else "not installed"
                    self.say(
                        f"  {location.index}. {location.id}  {location.name:<18} "
                        f"token={self.sim.pit_for(location.id)}  app {state}"
                    )
            case "install" | "uninstall":
                await self._install(command.lower() == "install", rest)
            case "quit" | "exit":
                self.say("Stopping the sandbox.")
                self.stop.set()
            case _:
                self.say(f"Unknown command {command!r}. Type help for the list.")

    async def _install(self, install: bool, ref: str) -> None:
        try:
            location_id = self.sim.find_location(ref)
        except LookupError as exc:
            self.say(f"✗ {exc.args[0]}")
            return
        sim = self.sim
        delivery = await (sim.install(location_id) if install else sim.uninstall(location_id))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(WEBHOOK_WAIT_SECONDS):
                await delivery.tried.wait()
        if delivery.url is None:
            fate = "no webhook URL set, so no webhook sent"
        else:
            fate = f"webhook to {delivery.url}: {delivery.outcome} {delivery.attempts}"
        done = "installed on" if install else "uninstalled from (its OAuth tokens revoked)"
        self.say(f"✓ App {done} {sim.location_name(location_id)} ({location_id}); {fate}.")

    async def _reply(self, arguments: str) -> None:
        try:
            channel, who, text = parse_reply(arguments)
        except ValueError as exc:
            self.say(f"{exc}\n{USAGE}")
            return
        try:
            reply = await self.sim.reply_as(who, text, channel=channel)
        except (LookupError, ValueError) as exc:
            self.say(f"✗ {exc.args[0] if exc.args else exc}")
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(WEBHOOK_WAIT_SECONDS):
                await reply.first_attempts()
        answer = reply.to_json()
        self.say(
            f"✓ {reply.contact.name} replied by {reply.channel}: message {answer['messageId']} "
            f"in conversation {answer['conversationId']}.\n  {reply.webhook_note()}"
        )


def parse_reply(arguments: str) -> tuple[str | None, str, str]:
    """``[--channel CH] WHO [--channel CH] TEXT`` -> (channel, who, text). WHO may be quoted."""
    rest = arguments.strip()
    channel: str | None = None
    option = _CHANNEL_OPTION.fullmatch(rest)
    if option is not None:
        channel, rest = option.group(1), option.group(2)
    if rest[:1] in {'"', "'"}:
        end = rest.find(rest[0], 1)
        if end < 0:
            raise ValueError("Close the quote around the customer's name.")
        who, text = rest[1:end], rest[end + 1 :].strip()
    else:
        who, _, text = rest.partition(" ")
        text = text.strip()
    option = _CHANNEL_OPTION.fullmatch(text)
    if channel is None and option is not None:  # `reply WHO --channel CH TEXT` works too
        channel, text = option.group(1), option.group(2).strip()
    if not who or not text:
        raise ValueError("Say who replies and what they write.")
    return channel, who, text


class _LineReader:
    """Feeds complete lines from a terminal descriptor into a queue; None at end of input."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.lines: asyncio.Queue[str | None] = asyncio.Queue()
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._pending = ""

    def on_readable(self) -> None:
        try:
            data = os.read(self.fd, 4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""  # the terminal went away: as good as Ctrl-D
        if not data:
            asyncio.get_running_loop().remove_reader(self.fd)
            self.lines.put_nowait(None)
            return
        self._pending += self._decoder.decode(data)
        *complete, self._pending = self._pending.split("\n")
        for line in complete:
            self.lines.put_nowait(line.rstrip("\r"))


async def run_prompt(sim: HighLevelSimulator, fd: int, out: TextIO, stop: asyncio.Event) -> None:
    """Read commands from ``fd`` until quit or end of input (both set ``stop``)."""
    loop = asyncio.get_running_loop()
    reader = _LineReader(fd)
    try:
        loop.add_reader(fd, reader.on_readable)
    except (NotImplementedError, OSError, ValueError):
        # An event loop that cannot watch this descriptor: no prompt, still serving.
        print("(No prompt here: use the curl command above.)", file=out, flush=True)
        return
    prompt = SandboxPrompt(sim, out, stop)
    try:
        print(MARKER, end="", file=out, flush=True)
        while not stop.is_set():
            line = await reader.lines.get()
            if line is None:
                prompt.say("\nEnd of input: stopping the sandbox.")
                stop.set()
                return
            try:
                await prompt.execute(line)
            except Exception as exc:  # a sandbox bug: say so, keep the prompt and the server up
                prompt.say(f"✗ The sandbox failed on that line: {type(exc).__name__}: {exc}")
            if not stop.is_set():
                print(MARKER, end="", file=out, flush=True)
    finally:
        loop.remove_reader(fd)
