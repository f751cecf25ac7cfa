"""`/highlevel`'s messages: within Slack's limits, names escaped, never a token, relative times."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest
from slack_sdk.models.blocks import Block

from bot.tenancy.admin import AccountStatus, match_sub_account
from bot.ui.highlevel_builder import (
    STATUS_ACCOUNTS_SHOWN,
    admin_check_failed_message,
    admins_only_message,
    ambiguous_account_message,
    connect_message,
    inbox_message,
    link_announcement,
    link_first_message,
    linked_message,
    none_connected_message,
    relative,
    status_message,
    unknown_account_message,
    unknown_subcommand_message,
    usage_message,
)
from storage import ChannelLink, LocationRecord
from tests.ui._slack_checks import assert_message_accepted, foreign_markup, mrkdwn_texts

NOW = 1_714_000_000.0
EVIL = "<!channel> Acme & Co <https://evil.example|click>"


def record(
    location_id: str = "loc1", name: str | None = "Acme Dental", **changes: Any
) -> LocationRecord:
    base = LocationRecord(
        location_id=location_id,
        name=name,
        company_id=None,
        auth="pit",
        status="connected",
        access_token=None,
        refresh_token=None,
        expires_at=None,
        obtained_at=None,
        token_version=0,
        inbox_team_id=None,
        inbox_channel_id=None,
        disconnected_reason=None,
        disconnect_notified=False,
        last_webhook_at=None,
        last_poll_at=None,
        connected_at=NOW - 86_400,
        updated_at=NOW - 3600,
    )
    return dataclasses.replace(base, **changes)


def shown(message: tuple[str, list[Block]], *, link: str = "") -> str:
    """Everything the message shows, after checking Slack takes it and that it carries no
    markup but the builders' own (and `link`, a link it is meant to have)."""
    text, blocks = message
    payload = assert_message_accepted(text, blocks)
    texts = mrkdwn_texts(payload)
    for part in texts:
        assert foreign_markup(part.replace(link, "") if link else part) == [], part
    return "\n".join([text, *texts])


def test_relative_times() -> None:
    assert relative(NOW - 10, NOW) == "just now"
    assert relative(NOW - 300, NOW) == "5 min ago"
    assert relative(NOW - 3 * 3600, NOW) == "3 h ago"
    assert relative(NOW - 2 * 86_400, NOW) == "2 d ago"
    assert relative(NOW + 5 * 3600, NOW) == "in 5 h"
    assert relative(NOW + 90, NOW) == "in 2 min"


def test_status_covers_each_way_of_connecting_and_shows_no_token() -> None:
    oauth = record(
        "loc2",
        "Beta Realty",
        auth="location",
        access_token="gAAAAAciphertext-access",
        refresh_token="gAAAAAciphertext-refresh",
        expires_at=NOW + 5 * 3600,
        last_webhook_at=NOW - 120,
        last_poll_at=NOW - 30,
    )
    agency = record("loc3", "Gamma Law", auth="company", expires_at=NOW - 600)
    gone = record("loc4", None, status="disconnected", disconnected_reason="invalid_grant")
    statuses = [
        AccountStatus(record(), (), "C0INBOX", default_inbox=True),
        AccountStatus(
            oauth,
            (
                ChannelLink("T1", "C0SALES", "loc2", "U1", NOW),
                ChannelLink("T1", "C0B", "loc2", "U1", NOW),
            ),
            "C0SALES",
            default_inbox=False,
        ),
        AccountStatus(agency, (), None, default_inbox=False),
        AccountStatus(gone, (), None, default_inbox=False),
    ]
    text = shown(status_message(statuses, now=NOW))
    assert "3 connected, 1 disconnected" in text
    assert "Private Integration Token" in text
    assert "Marketplace app, sub-account install" in text
    assert "Marketplace app, agency install" in text
    assert "expires in 5 h" in text and "expired 10 min ago" in text
    assert "Disconnected* 1 h ago: invalid_grant" in text
    assert "Linked channels: <#C0SALES>, <#C0B>" in text
    assert "Inbox: <#C0INBOX> (`SLACK_INBOX_CHANNEL`)" in text
    assert "none (new conversations are not shown in Slack)" in text
    assert "Last webhook 2 min ago · last poll just now" in text
    assert "ciphertext" not in text


def test_status_of_many_sub_accounts_fits_one_message() -> None:
    statuses = [
        AccountStatus(record(f"loc{i}", f"Client {i}"), (), None, default_inbox=False)
        for i in range(STATUS_ACCOUNTS_SHOWN + 7)
    ]
    text = shown(status_message(statuses, now=NOW))
    assert "and 7 more" in text
    assert "No HighLevel sub-account is known" in shown(status_message([], now=NOW))


Builder = Callable[[LocationRecord], tuple[str, list[Block]]]


@pytest.mark.parametrize(
    "build",
    [
        lambda r: linked_message(r, "C0SALES", previous="old<id>", already=False, announced=False),
        lambda r: linked_message(r, "C0SALES", previous=None, already=True, announced=True),
        lambda r: link_announcement("U0AGENT", r),
        lambda r: inbox_message(r, "C0SALES"),
        lambda r: unknown_account_message(EVIL, [r]),
        lambda r: ambiguous_account_message(EVIL, [r, r]),
        lambda r: link_first_message([r]),
        lambda r: status_message([AccountStatus(r, (), None, default_inbox=False)], now=NOW),
    ],
)
def test_names_from_highlevel_are_escaped(build: Builder) -> None:
    text = shown(build(record(name=EVIL)))
    assert "&lt;!channel&gt;" in text
    assert "<!channel>" not in text


def test_connect_with_and_without_the_marketplace_app() -> None:
    install = "<https://bridge.example.com/ghl/install|open the HighLevel install page>"
    with_app = shown(connect_message("https://bridge.example.com/ghl/install"), link=install)
    assert "<https://bridge.example.com/ghl/install|" in with_app
    without = shown(connect_message(None))
    assert "Private Integration Token" in without and "GHL_CLIENT_ID" in without


def test_the_other_messages_are_accepted_by_slack() -> None:
    assert "/highlevel link" in shown(usage_message())
    assert "has no" in shown(unknown_subcommand_message("<@U1>"))
    refusal = shown(admins_only_message("link", ["U0BOSS", "U0ALSO"]))
    assert "<@U0ALSO>, <@U0BOSS> (`ADMIN_SLACK_USERS`)" in refusal
    assert "users:read" in shown(admin_check_failed_message("missing_scope"))
    assert "/highlevel connect" in shown(none_connected_message("https://x.example/ghl/install"))
    many = [record(f"loc{i}", f"Client {i}") for i in range(40)]
    assert "and 25 more" in shown(unknown_account_message("nope", many))


def test_matching_a_sub_account_by_id_name_or_prefix() -> None:
    records = [
        record("abcID1", "Acme Dental"),
        record("abcID2", "Acme Plumbing"),
        record("xyzID3", "Zeta Law"),
        record("noName", None),
    ]
    assert match_sub_account(records, "abcID2").record == records[1]
    assert match_sub_account(records, "  acme dental ").record == records[0]
    assert match_sub_account(records, "“Zeta”").record == records[2]
    assert match_sub_account(records, "zet").record == records[2]
    assert match_sub_account(records, "noName").record == records[3]
    ambiguous = match_sub_account(records, "ACME")
    assert ambiguous.record is None and ambiguous.candidates == (records[0], records[1])
    assert match_sub_account(records, "abcid2") == match_sub_account(records, "nothing")
    assert match_sub_account(records, "   ").record is None
