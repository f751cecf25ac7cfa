"""`ghl-bridge demo`: the scripted conversation against the real bridge and both simulators."""

from __future__ import annotations

import argparse
import io
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from bot.demo import (
    ADA_REPLY,
    EMAIL_SUBJECT,
    GRACE_REPLY,
    QUICK_TEXT,
    STEP_QUICK_SEND,
    STEPS,
    THREADED_REPLY,
    Console,
    SlackNames,
    add_arguments,
    readable,
    render_blocks,
    run,
    use_color,
)
from bot.demo.pictures import STEP_PICTURES
from bot.demo.tenancy import STEP_SUB_ACCOUNTS
from bot.demo.workspaces import STEP_WORKSPACES
from bot.sandbox.highlevel import ADA_LOVELACE_ID, GRACE_HOPPER_ID, Faults, HighLevelSimulator
from storage import SqliteStore

REPO = Path(__file__).resolve().parents[1]
ANSI = "\x1b["


def demo_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(list(argv))


def transcript_of(output: str) -> str:
    """The part after the progress lines: what Slack shows, and the thread map."""
    assert "What Slack shows" in output, output
    return output.split("What Slack shows", 1)[1]


async def test_demo_plays_every_step_and_prints_the_conversation(
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    database = tmp_path / "kept" / "demo.sqlite3"
    caplog.set_level(logging.INFO)  # as `ghl-bridge serve` runs; the demo quiets it meanwhile
    started = time.monotonic()

    code = await run(demo_args("--keep-db", str(database)))

    elapsed = time.monotonic() - started
    output = capsys.readouterr().out
    assert code == 0, output
    assert elapsed < 60
    for step in STEPS:
        assert f"✓ {step}" in output
    # A picture to the customer by MMS and the customer's photo back (bot/demo/pictures.py).
    assert f"✓ {STEP_PICTURES}" in output
    assert "uploaded to HighLevel once and sent as the SMS's attachment (MMS)" in output
    assert "with on-our-way.png, posted in her thread" in output
    # Two sub-accounts routed to two channels, and a token refreshed (bot/demo/tenancy.py).
    assert f"✓ {STEP_SUB_ACCOUNTS}" in output
    assert "#sales → Sandbox Dental" in output and "#plumbing → Sandbox Plumbing" in output
    assert "token was refreshed before the next send" in output
    # Two Slack workspaces installed through /slack/install, one uninstalling (workspaces.py).
    assert f"✓ {STEP_WORKSPACES}" in output
    assert "Agency HQ and Acme Clinic installed the app through /slack/install" in output
    assert "shown in Slack with Acme Clinic's own token" in output
    assert "Acme Clinic uninstalled the app" in output
    assert not any(line.startswith("✗") for line in output.splitlines())
    assert ANSI not in output  # captured output is not a terminal
    shown = transcript_of(output)
    # The SMS, both customers' replies and the threaded email reply, as Slack shows them.
    for text in (QUICK_TEXT, ADA_REPLY, GRACE_REPLY, THREADED_REPLY, EMAIL_SUBJECT):
        assert text in shown
    assert "[Reply]" in shown and "@Avery Agent" in shown
    assert "<@" not in shown and "<!date" not in shown and "&lt;" not in shown
    assert "Cancelled — not sent" in shown
    assert "✗ Not sent: Contact has DND enabled for SMS" in shown  # HighLevel's own 422 text
    assert [r for r in caplog.records if r.levelno < logging.WARNING] == []
    assert logging.getLogger("bot").isEnabledFor(logging.INFO)  # as it was before

    async with SqliteStore(database) as store:
        location = "sbxLocation000000001"
        (ada,) = await store.find_threads_for_contact(location, ADA_LOVELACE_ID)
        (grace,) = await store.find_threads_for_contact(location, GRACE_HOPPER_ID)
    assert grace.email_thread_id and grace.thread_ts and grace.conversation_id
    assert ada.thread_ts and ada.email_thread_id is None
    # The reply carried the mailbox thread's id, and the thread map shows the same thread.
    assert f"threadId={grace.email_thread_id} replyMessageId=" in output
    assert "emailReplyMode=reply_all" in output
    thread_map = shown.split("Thread map", 1)[1]
    grace_row = next(line for line in thread_map.splitlines() if "Grace Hopper" in line)
    assert grace.thread_ts in grace_row and grace.email_thread_id in grace_row
    assert grace.conversation_id in grace_row and "Email" in grace_row
    ada_row = next(line for line in thread_map.splitlines() if "Ada Lovelace" in line)
    assert ada.thread_ts in ada_row and "SMS" in ada_row


async def test_a_refused_step_fails_the_demo_and_names_the_step(
    capsys: pytest.CaptureFixture[str],
) -> None:
    highlevel = HighLevelSimulator()
    # Ada is on Do Not Disturb from the start, so the quick send to her cannot happen.
    highlevel.contacts[ADA_LOVELACE_ID].dnd_settings["SMS"] = {"status": "active"}

    code = await run(demo_args("--step-timeout", "5"), highlevel=highlevel)

    output = capsys.readouterr().out
    assert code == 1
    assert f"✗ {STEP_QUICK_SEND}" in output
    assert f"Demo failed: step “{STEP_QUICK_SEND}” did not happen" in output
    assert "Do Not Disturb" in output  # what Slack told the person, quoted in the reason
    assert not any(f"✓ {step}" in output for step in STEPS)


async def test_a_step_whose_effect_never_shows_times_out_and_fails(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # A 500 to the send: the bridge shows "may not have been sent" and waits for a person,
    # so HighLevel never accepts the SMS the first step waits for.
    highlevel = HighLevelSimulator(faults=Faults(error_next=1, scope="sends"))

    code = await run(demo_args("--step-timeout", "1"), highlevel=highlevel)

    output = capsys.readouterr().out
    assert code == 1
    assert "HighLevel did not receive the SMS (waited 1 s)" in output
    assert f"step “{STEP_QUICK_SEND}” did not happen" in output


async def test_keep_db_refuses_an_existing_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    existing = tmp_path / "old.sqlite3"
    existing.write_bytes(b"someone's data")

    code = await run(demo_args("--keep-db", str(existing)))

    assert code == 2
    assert "exists" in capsys.readouterr().out
    assert existing.read_bytes() == b"someone's data"


def test_piped_demo_prints_no_colour_codes() -> None:
    script = (
        "import argparse, asyncio, bot.demo as d\n"
        "p = argparse.ArgumentParser(); d.add_arguments(p)\n"
        "raise SystemExit(asyncio.run(d.run(p.parse_args([]))))\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "TERM")}
    result = subprocess.run(  # noqa: S603 - our own interpreter and a fixed script
        [sys.executable, "-c", script],
        cwd=REPO,
        env=env,
        capture_output=True,
        timeout=60,
        check=False,
    )
    output = result.stdout.decode("utf-8")
    assert result.returncode == 0, output + result.stderr.decode("utf-8", "replace")
    assert ANSI not in output
    assert f"✓ {STEP_QUICK_SEND}" in output and QUICK_TEXT in output


# ---------------------------------------------------------------- rendering and colour


NAMES = SlackNames(users={"U0AGENT": "Avery Agent"}, channels={"C0SALES": "sales"})


@pytest.mark.parametrize(
    ("mrkdwn", "text"),
    [
        ("*SMS* from <@U0AGENT> to *Ada*", "SMS from @Avery Agent to Ada"),
        ("<@U0NOBODY> and <@U0AGENT|ave>", "@U0NOBODY and @ave"),
        ("in <#C0SALES> or <#C0OTHER|other>", "in #sales or #other"),
        (
            "🕒 Scheduled for <!date^1700000000^{date_short_pretty}|2023-11-14 22:13 UTC>",
            "🕒 Scheduled for 2023-11-14 22:13 UTC",
        ),
        ("<!here> look", "@here look"),
        (
            "<https://example.com/a|the quote> <mailto:a@b.c>",
            "the quote (https://example.com/a) mailto:a@b.c",
        ),
        ("a &lt;b&gt; &amp;lt; &amp;amp;", "a <b> &lt; &amp;"),
        ("2*3*4 and snake_case_name, _note_", "2*3*4 and snake_case_name, note"),
    ],
)
def test_readable_turns_mrkdwn_into_what_a_person_reads(mrkdwn: str, text: str) -> None:
    assert readable(mrkdwn, NAMES) == text


def test_readable_keeps_emphasis_marks_when_asked() -> None:
    assert readable("*Subject:* hi", NAMES, emphasis=True) == "*Subject:* hi"


def test_render_blocks_shows_sections_context_buttons_and_unknowns() -> None:
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": "*Email* to <@U0AGENT>\nline 2"}},
        {"type": "section", "fields": [{"type": "plain_text", "text": "*as typed*"}]},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": "✓ Sent"}]},
        {
            "type": "actions",
            "elements": [
                {"type": "button", "text": {"type": "plain_text", "text": "Reply"}},
                {"type": "button", "text": {"type": "plain_text", "text": "Cancel"}},
            ],
        },
        {"type": "divider"},
        {"type": "video"},
    ]
    assert render_blocks(blocks, NAMES) == [
        "Email to @Avery Agent",
        "line 2",
        "*as typed*",  # plain_text is never mrkdwn
        "✓ Sent",
        "[Reply]  [Cancel]",
        "────────",
        "[video block]",
    ]


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(
    ("stream", "no_color", "env", "expected"),
    [
        (_Terminal(), False, {}, True),
        (_Terminal(), True, {}, False),
        (_Terminal(), False, {"NO_COLOR": "1"}, False),
        (_Terminal(), False, {"TERM": "dumb"}, False),
        (_Terminal(), False, {"NO_COLOR": ""}, True),  # no-color.org: empty means unset
        (io.StringIO(), False, {}, False),
    ],
)
def test_colour_only_on_a_terminal_that_allows_it(
    stream: io.StringIO, no_color: bool, env: dict[str, str], expected: bool
) -> None:
    assert use_color(stream, no_color=no_color, env=env) is expected


def test_console_styles_only_with_colour() -> None:
    for color in (True, False):
        stream = io.StringIO()
        console = Console(stream, color=color)
        console.begin_step("quick send")
        console.end_step("quick send", "done", ok=True)
        console.line(console.styled("*SMS* from me"))
        written = stream.getvalue()
        assert (ANSI in written) is color
        assert "✓ quick send" in written.replace("\x1b[32m✓\x1b[0m", "✓")
        assert "*SMS*" not in written  # emphasis is styled, or dropped: never raw marks
