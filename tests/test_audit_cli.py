"""`ghl-bridge audit`: the rows it formats (pure), its errors, and an end-to-end run whose CSV
is checked against the HighLevel simulator's own record of the sends."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bot import audit
from bot.__main__ import main
from bot.sandbox.highlevel import ADA_LOVELACE_ID, KATHERINE_JOHNSON_ID
from bot.sandbox.stack import AGENT_USER, SALES_CHANNEL, SandboxStack
from storage import AuditRow, OutboxState, StatusChange
from tests.e2e.conftest import BACKENDS, eventually, query, stack, url_of
from tests.e2e.test_outbound import SEND, action_ids, quick_send, roots, went_out

__all__ = ["stack"]  # a fixture, imported for the end-to-end test


@pytest.fixture
def stack_overrides() -> dict[str, Any]:
    # Eleven posts and updates in one channel: not at Slack's real pace of one a second.
    return {"slack_post_rate": 50.0}


NOV_1 = datetime(2026, 11, 1, tzinfo=UTC).timestamp()


def _row(**changes: object) -> AuditRow:
    fields: dict[str, object] = {
        "outbox_id": 7,
        "created_at": NOV_1 + 9 * 3600 + 30 * 60,
        "team_id": "T1",
        "channel_id": "C1",
        "slack_user_id": "U1",
        "location_id": "loc-1",
        "contact_id": "contact-1",
        "message_type": "SMS",
        "state": OutboxState.SENT,
        "ghl_message_ids": ("m-1", "m-2"),
        "scheduled_at": None,
        "quiet_hours_override": False,
        "resend_of": None,
        "history": (
            StatusChange("queued", NOV_1 + 9 * 3600 + 30 * 60, None),
            StatusChange("sent", NOV_1 + 9 * 3600 + 30 * 60 + 1, None),
            StatusChange("delivered", NOV_1 + 9 * 3600 + 31 * 60, None),
        ),
    }
    fields.update(changes)
    return AuditRow(**fields)  # type: ignore[arg-type]


# ------------------------------------------------------------------------- formatting


def test_a_row_as_csv() -> None:
    out = io.StringIO()
    assert audit.write([_row(), _row(outbox_id=8, quiet_hours_override=True, resend_of=7)], out)
    lines = out.getvalue().splitlines()
    assert lines[0] == ",".join(audit.COLUMNS)
    assert lines[1] == (
        "7,2026-11-01T09:30:00Z,T1,C1,U1,loc-1,contact-1,SMS,m-1 m-2,sent,"
        "queued@2026-11-01T09:30:00Z; sent@2026-11-01T09:30:01Z; delivered@2026-11-01T09:31:00Z,"
        "false,,"
    )
    assert lines[2].startswith("8,") and lines[2].endswith(",true,7,")


def test_a_row_as_a_json_line() -> None:
    out = io.StringIO()
    audit.write(
        [_row(state=OutboxState.FAILED, ghl_message_ids=(), scheduled_at=NOV_1 + 86400)],
        out,
        "jsonl",
    )
    [line] = out.getvalue().splitlines()
    assert json.loads(line) == {
        "id": 7,
        "time": "2026-11-01T09:30:00Z",
        "workspace": "T1",
        "channel": "C1",
        "person": "U1",
        "sub_account": "loc-1",
        "contact": "contact-1",
        "channel_type": "SMS",
        "highlevel_message_id": [],
        "outcome": "failed",
        "status_history": [
            {"status": "queued", "at": "2026-11-01T09:30:00Z"},
            {"status": "sent", "at": "2026-11-01T09:30:01Z"},
            {"status": "delivered", "at": "2026-11-01T09:31:00Z"},
        ],
        "quiet_hours_override": False,
        "resend_of": None,
        "scheduled_for": "2026-11-02T00:00:00Z",
    }


def test_dates_and_times_are_utc() -> None:
    assert audit.parse_when("2026-11-01") == NOV_1
    assert audit.parse_when("2026-11-01", end_of_day=True) == NOV_1 + 86400
    assert audit.parse_when("2026-11-01T09:30:00Z") == NOV_1 + 9 * 3600 + 1800
    assert audit.parse_when("2026-11-01T09:30") == NOV_1 + 9 * 3600 + 1800
    assert audit.parse_when("2026-11-01T10:30:00+01:00") == NOV_1 + 9 * 3600 + 1800
    for bad in ("yesterday", "2026-13-01", "01/11/2026", ""):
        with pytest.raises(audit.BadDate):
            audit.parse_when(bad)


def test_a_bad_date_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'never-made.db'}")
    assert main(["audit", "--since", "2026-11-01", "--until", "soon"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "'soon' is not a date" in err
    assert not (tmp_path / "never-made.db").exists()
    # A database that is not there is not made.
    assert main(["audit", "--since", "2026-11-01"]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert not (tmp_path / "never-made.db").exists()


# ------------------------------------------------------------------------- end to end


def _run_audit(stack: SandboxStack, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # Only DATABASE_URL: the audit needs no Slack or HighLevel setting.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "GHL_"))}
    env["DATABASE_URL"] = url_of(stack)
    return subprocess.run(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "bot", "audit", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _message_id(stack: SandboxStack, contact_id: str, text: str) -> str:
    """The id the simulator gave the message with this text (what its send answered)."""
    conversation = stack.highlevel.conversation_for(contact_id)
    assert conversation is not None
    [message] = [m for m in stack.highlevel.messages_for(conversation.id) if m.body == text]
    return message.id


@pytest.mark.parametrize("stack", BACKENDS, indirect=True)
async def test_the_audit_csv_matches_the_simulators_record_of_sends(
    stack: SandboxStack, tmp_path: Path
) -> None:
    since = datetime.now(UTC).strftime("%Y-%m-%d")
    await quick_send(stack, "+1 415 555 0100 Audit one")
    await eventually(lambda: roots(stack) and went_out(roots(stack)[0]))
    await quick_send(stack, "+44 7911 123456 Audit two")
    await eventually(lambda: len(stack.highlevel.requests_to(*SEND)) == 2)
    first_id = _message_id(stack, ADA_LOVELACE_ID, "Audit one")
    # The simulator delivers at once (the echo webhook says so); Ada then reads it.
    await stack.highlevel.set_message_status(first_id, "read")
    # Ada turns DND on in HighLevel: HighLevel refuses the next send to her.
    stack.highlevel.contacts[ADA_LOVELACE_ID].dnd_settings = {"SMS": {"status": "active"}}
    await quick_send(stack, "+1 415 555 0100 Audit three")
    failed_post = await eventually(
        lambda: (
            (thread := stack.slack.thread(SALES_CHANNEL, roots(stack)[0].ts))
            and len(thread) == 2
            and "retry" in action_ids(thread[1])
            and thread[1]
        )
    )
    # She turns it off again, and a person presses Retry: a resend, which goes out.
    stack.highlevel.contacts[ADA_LOVELACE_ID].dnd_settings = {}
    await stack.driver.block_action(
        "retry", user_id=AGENT_USER, channel_id=SALES_CHANNEL, message_ts=failed_post.ts
    )
    await eventually(lambda: len(stack.highlevel.requests_to(*SEND)) == 4)
    await eventually(lambda: all(r.status for r in stack.highlevel.requests_to(*SEND)) or None)

    async def settled() -> bool:
        # Every send's outcome, and the statuses HighLevel reported, recorded.
        counts = await query(
            stack,
            "SELECT status, COUNT(*) FROM outbox_status_history"
            " WHERE status IN ('sent', 'failed', 'delivered', 'read') GROUP BY status",
        )
        return dict(counts) == {"sent": 3, "failed": 1, "delivered": 3, "read": 1}

    await eventually(settled)

    result = await asyncio.to_thread(_run_audit, stack, tmp_path, "--since", since)
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout)))

    # The simulator's record: every send request, in order, with its answer.
    requests = stack.highlevel.requests_to(*SEND)
    assert [r.status for r in requests] == [200, 200, 422, 200]
    assert len(rows) == len(requests)
    location = stack.highlevel.location_id
    for row, request in zip(rows, requests, strict=True):
        assert request.body is not None
        assert row["workspace"] == stack.slack.team_id
        assert (row["channel"], row["person"]) == (SALES_CHANNEL, AGENT_USER)
        assert row["sub_account"] == location
        assert row["contact"] == request.body["contactId"]
        assert row["channel_type"] == request.body["type"]
        assert row["quiet_hours_override"] == "false"
        assert row["scheduled_for"] == ""
        if request.status == 200:
            assert row["outcome"] == "sent"
            expected = _message_id(stack, request.body["contactId"], request.body["message"])
            assert row["highlevel_message_id"] == expected
        else:
            assert row["outcome"] == "failed"
            assert row["highlevel_message_id"] == ""
        assert row["time"] >= since
    assert [row["contact"] for row in rows] == [
        ADA_LOVELACE_ID,
        KATHERINE_JOHNSON_ID,
        ADA_LOVELACE_ID,
        ADA_LOVELACE_ID,
    ]
    statuses = [[step.split("@")[0] for step in row["status_history"].split("; ")] for row in rows]
    assert statuses == [
        ["queued", "sent", "delivered", "read"],
        ["queued", "sent", "delivered"],
        ["queued", "failed"],
        ["queued", "sent", "delivered"],
    ]
    assert stack.highlevel.messages[first_id].status == "read"
    assert [row["resend_of"] for row in rows] == ["", "", "", rows[2]["id"]]
    # No body, phone number or email in it.
    for secret in ("Audit", "5550100", "7911123456", "example.com"):
        assert secret not in result.stdout

    # Scoped: another sub-account has none of them; a later window neither.
    other = await asyncio.to_thread(
        _run_audit,
        stack,
        tmp_path,
        "--since",
        since,
        "--location",
        "elsewhere",
        "--format",
        "jsonl",
    )
    assert (other.returncode, other.stdout) == (0, "")
    later = await asyncio.to_thread(_run_audit, stack, tmp_path, "--since", "2999-01-01")
    assert later.stdout.splitlines() == [",".join(audit.COLUMNS)]
