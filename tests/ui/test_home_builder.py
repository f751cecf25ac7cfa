"""The Home tab, its search modal and the root of a thread opened from it: what people read,
escaped, and always a view Slack takes."""

from __future__ import annotations

from typing import Any

from slack_sdk.models.views import View

from bot.sandbox.slack._workspace_home import home_view_problems
from bot.ui.home_builder import (
    HOME_OPEN_ACTION,
    HOME_SEARCH_ACTION,
    RETENTION_NOTE,
    VIEW_BLOCKS_MAX,
    ContactHit,
    HomeAccount,
    HomeConversation,
    HomePage,
    OpenedThread,
    SearchState,
    age_text,
    home_view,
    location_of,
    opened_root,
    preview_text,
    search_modal,
)
from bot.ui.thread_builder import REPLY_ACTION
from tests.ui._slack_checks import (
    assert_message_accepted,
    assert_view_accepted,
    foreign_markup,
    mrkdwn_texts,
)

NOW = 1_700_000_000.0
LINK = "https://sandbox.slack.com/archives/C0INBOX/p1700000000000100"


def home_accepted(view: View) -> dict[str, Any]:
    """The Home tab's JSON, after proving Slack (views.publish) and slack_sdk take it."""
    view.validate_json()
    payload = view.to_dict()
    assert home_view_problems(payload) == []
    return payload


def texts(payload: Any) -> str:
    return "\n".join(mrkdwn_texts(payload))


def conversation(n: int, **changes: Any) -> HomeConversation:
    values: dict[str, Any] = {
        "thread_id": n,
        "contact": f"Contact {n}",
        "channel_id": "C0INBOX",
        "waiting_since": NOW - 60 * n,
        "permalink": f"{LINK}{n}",
        "preview": f"message {n}",
        "message_channel": "SMS",
    }
    return HomeConversation(**(values | changes))


def test_waiting_conversations_in_the_order_given_with_link_channel_age_and_preview() -> None:
    account = HomeAccount(
        "loc-1", "Dental & Co", (conversation(3), conversation(2), conversation(1)), 3
    )
    payload = home_accepted(home_view(HomePage((account,), NOW)))
    shown = texts(payload)
    assert shown.index("Contact 3") < shown.index("Contact 2") < shown.index("Contact 1")
    assert f"<{LINK}3|*Contact 3*> in <#C0INBOX> · waiting 3 min" in shown
    assert "> SMS: message 3" in shown
    assert "*Dental &amp; Co* · 3 waiting" in shown
    buttons = [
        block["accessory"]
        for block in payload["blocks"]
        if block.get("accessory", {}).get("action_id") == HOME_SEARCH_ACTION
    ]
    assert [b["value"] for b in buttons] == ["loc-1"]


def test_what_customers_wrote_cannot_smuggle_markup() -> None:
    hostile = conversation(
        1,
        contact="<!channel> *Eve*",
        preview="<https://evil.example|click> <@U0BOSS> & <b>bold</b> <!here>",
        permalink="https://evil.example/x|y",  # not a plain link: the name is shown unlinked
    )
    payload = home_accepted(home_view(HomePage((HomeAccount("l", "<#C1>", (hostile,), 1),), NOW)))
    shown = texts(payload)
    assert foreign_markup(shown.replace("\n> ", "\n")) == []
    assert "&lt;!channel&gt;" in shown
    assert "evil.example/x" not in shown


def test_a_message_removed_by_retention_says_so_and_no_message_shows_nothing() -> None:
    removed = conversation(1, preview=None, removed=True)
    silent = conversation(2, preview=None)
    payload = home_accepted(
        home_view(HomePage((HomeAccount("l", "A", (removed, silent), 2),), NOW))
    )
    shown = texts(payload)
    assert RETENTION_NOTE in shown
    assert shown.count(">") >= 1 and "message 2" not in shown


def test_empty_states() -> None:
    nothing = texts(home_accepted(home_view(HomePage((), NOW))))
    assert "Nothing is waiting for a reply" in nothing
    assert "/highlevel connect" in nothing and "/highlevel link" in nothing

    quiet = texts(home_accepted(home_view(HomePage((HomeAccount("l", "A", (), 0),), NOW))))
    assert "Nothing is waiting for a reply" in quiet
    assert "/highlevel connect" not in quiet

    refused = texts(home_accepted(home_view(HomePage((), NOW, allowed=False))))
    assert "not one of them" in refused


def test_many_sub_accounts_with_many_waiting_stay_within_slacks_block_limit() -> None:
    accounts = tuple(
        HomeAccount(
            f"loc-{a}", f"Account {a}", tuple(conversation(100 * a + n) for n in range(15)), 40
        )
        for a in range(12)
    )
    payload = home_accepted(home_view(HomePage(accounts, NOW)))
    assert len(payload["blocks"]) <= VIEW_BLOCKS_MAX
    shown = texts(payload)
    # Every sub-account keeps its header; what did not fit is counted.
    assert all(f"*Account {a}* · 40 waiting" in shown for a in range(12))
    assert "more waiting" in shown


def test_ages() -> None:
    assert age_text(5) == "under a minute"
    assert age_text(125) == "2 min"
    assert age_text(3 * 3600 + 5) == "3 h"
    assert age_text(5 * 86400) == "5 d"


def test_the_search_modal_lists_contacts_with_open_and_the_opened_thread() -> None:
    state = SearchState(
        "loc-1",
        "Dental",
        "ada <x>",
        results=(
            ContactHit("c-1", "Ada <Lovelace>", phone="+14155550100", email="ada@example.com"),
            ContactHit("c-2", "Adam"),
        ),
        opened=OpenedThread("Ada", "C0INBOX", LINK, created=True),
    )
    payload = assert_view_accepted(search_modal(state))
    assert location_of(payload["private_metadata"]) == "loc-1"
    opens = [
        block["accessory"]["value"]
        for block in payload["blocks"]
        if block.get("accessory", {}).get("action_id") == HOME_OPEN_ACTION
    ]
    assert opens == ["c-1", "c-2"]
    shown = texts(payload)
    assert f"Opened <{LINK}|the thread with *Ada*> in <#C0INBOX>" in shown
    assert "*Ada &lt;Lovelace&gt;* · +14155550100 · ada@example.com" in shown
    assert foreign_markup(shown.replace(f"<{LINK}|", "").replace("*>", "*")) == []

    none = texts(assert_view_accepted(search_modal(SearchState("l", "A", "<!here>", results=()))))
    assert "No contact matches “&lt;!here&gt;”" in none
    assert location_of("not json") is None and location_of('{"location_id": 3}') is None


def test_the_root_of_a_thread_opened_from_home() -> None:
    text, blocks = opened_root(
        contact="Ada <!channel>",
        address="+14155550100",
        account="Dental",
        opened_by="U0AGENT",
        thread_id=42,
    )
    payload = assert_message_accepted(text, blocks)
    shown = texts(payload)
    assert "*Conversation with Ada &lt;!channel&gt;* (+14155550100)" in shown
    assert "by <@U0AGENT>" in shown and "Dental" in shown
    assert foreign_markup(shown) == []
    (reply,) = [e for b in payload if b["type"] == "actions" for e in b["elements"]]
    assert (reply["action_id"], reply["value"]) == (REPLY_ACTION, "42")


def test_previews_read_html_emails_and_leave_plain_angle_brackets() -> None:
    assert preview_text("<p>Hello&nbsp;<b>there</b></p>") == "Hello there"
    assert preview_text("is a<b and c>d?") == "is a<b and c>d?"
    assert preview_text("x" * 500).endswith("…") and len(preview_text("x" * 500)) == 150
