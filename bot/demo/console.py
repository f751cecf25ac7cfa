"""The demo's output: colour on terminals only, step lines, the transcript, the thread map."""

from __future__ import annotations

import io
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Final, TextIO

from bot.demo.slack_text import _EMPHASIS, SlackNames, readable, render_blocks, render_message
from bot.sandbox.slack import SlackMessage
from bot.sandbox.stack import AGENT_USER, INBOX_CHANNEL, SALES_CHANNEL, SandboxStack
from storage import ThreadRecord

_UTF8: Final = frozenset({"utf-8", "utf8"})


def use_color(
    stream: TextIO, *, no_color: bool = False, env: Mapping[str, str] | None = None
) -> bool:
    """Colour only on a terminal, and not with --no-color, NO_COLOR (no-color.org) or TERM=dumb."""
    env = os.environ if env is None else env
    if no_color or env.get("NO_COLOR") or env.get("TERM") == "dumb":
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


class Console:
    """Progress lines, the transcript and the thread map; ANSI colour only when `color`."""

    def __init__(self, stream: TextIO, *, color: bool) -> None:
        if isinstance(stream, io.TextIOWrapper) and stream.encoding.lower() not in _UTF8:
            # A legacy console or pipe encoding: show "?" for ✓ rather than crash on it.
            stream.reconfigure(errors="replace")
        self.stream = stream
        self.color = color

    def _paint(self, code: str, text: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.color else text

    def bold(self, text: str) -> str:
        return self._paint("1", text)

    def dim(self, text: str) -> str:
        return self._paint("2", text)

    def green(self, text: str) -> str:
        return self._paint("32", text)

    def red(self, text: str) -> str:
        return self._paint("31", text)

    def cyan(self, text: str) -> str:
        return self._paint("36", text)

    def styled(self, text: str) -> str:
        """Kept mrkdwn emphasis shown as terminal styles (`*bold*` bold, `_italic_` italic)."""
        codes = {"*": "1", "_": "3", "~": "9"}
        return _EMPHASIS.sub(lambda m: self._paint(codes[m.group(1)], m.group(2)), text)

    def line(self, text: str = "") -> None:
        self.stream.write(text + "\n")
        self.stream.flush()

    def begin_step(self, title: str) -> None:
        if self.color:  # a live "working on it" line, replaced when the step ends
            self.stream.write(self.dim(f"… {title}"))
            self.stream.flush()

    def end_step(self, title: str, detail: str, *, ok: bool) -> None:
        if self.color:
            self.stream.write("\r\x1b[K")
        self.line(f"{self.green('✓') if ok else self.red('✗')} {title}")
        self.line("    " + (self.dim(detail) if ok else self.red(detail)))

    def _message(self, message: SlackMessage, names: SlackNames, indent: str) -> None:
        author = names.users.get(message.user, message.user)
        self.line(f"{indent}{self.bold('● ' + author)}")
        for line in render_message(message, names, emphasis=self.color):
            self.line(f"{indent}  {self.styled(line)}")

    def transcript(self, stack: SandboxStack, names: SlackNames) -> None:
        """What Slack shows, channel by channel and thread by thread, then private notices."""
        slack = stack.slack
        self.line(self.bold("What Slack shows"))
        for channel_id in (SALES_CHANNEL, INBOX_CHANNEL):
            messages = slack.channel_messages(channel_id)
            name = names.channels.get(channel_id, channel_id)
            self.line(self.cyan(f"━━ #{name} ━━") + self.dim(f" ({len(messages) or 'no'} posts)"))
            for message in messages:
                self._message(message, names, "")
                replies = slack.thread(channel_id, message.ts)[1:]
                if replies:
                    self.line(self.dim(f"  ┆ thread: {len(replies)} replies"))
                for reply in replies:
                    self._message(reply, names, "  ┆ ")
            self.line()
        notices = slack.ephemerals(user=AGENT_USER)
        who = names.users.get(AGENT_USER, AGENT_USER)
        self.line(self.cyan(f"━━ only visible to {who} ━━") + self.dim(f" ({len(notices)})"))
        for notice in notices:
            where = names.channels.get(notice.channel or "", notice.channel or "?")
            lines = render_blocks(notice.blocks or [], names, emphasis=self.color)
            body = " / ".join(lines) if lines else readable(notice.text, names)
            self.line(f"  #{where}: {self.styled(body)}")

    def thread_map(
        self, threads: Sequence[ThreadRecord], names: SlackNames, *, kept_at: Path | None
    ) -> None:
        self.line()
        where = f" — kept at {kept_at}" if kept_at is not None else ""
        self.line(self.bold("Thread map in the bridge's database") + self.dim(where))
        header = ("channel", "thread ts", "contact", "conversation", "type", "email thread")
        rows = [
            (
                f"#{names.channels.get(t.channel_id, t.channel_id)}",
                t.thread_ts or "—",
                t.contact_label or t.contact_id,
                t.conversation_id or "—",
                t.channel_type or "—",
                t.email_thread_id or "—",
            )
            for t in threads
        ]
        widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
        self.line("  " + self.dim(_row(header, widths)))
        for row in rows:
            self.line("  " + _row(row, widths))
        if not rows:
            self.line("  (none)")


def _row(values: Sequence[str], widths: Sequence[int]) -> str:
    return "  ".join(v.ljust(w) for v, w in zip(values, widths, strict=True)).rstrip()
