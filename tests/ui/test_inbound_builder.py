"""Inbound posts: customer replies and HighLevel's own sends, escaped, within Slack's limits."""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable
from typing import Any

import pytest
from slack_sdk.models.blocks import Block

from bot.ui.attachment_links import ATTACHMENTS_SHOWN
from bot.ui.inbound_builder import (
    InboundPost,
    inbound_reply,
    inbound_root,
    message_type_label,
    mirrored_outbound,
    shortcut_outside_thread_notice,
    status_reaction,
)
from bot.ui.thread_builder import REPLY_ACTION
from tests.ui._slack_checks import (
    assert_message_accepted,
    broken_entities,
    foreign_markup,
    mrkdwn_texts,
    root_controls,
)

Builder = Callable[[InboundPost], tuple[str, list[Block]]]
BUILDERS: list[Builder] = [inbound_reply, inbound_root, mirrored_outbound]

INJECTIONS = "<!channel> <@U0EVE> <https://evil.example|click> & <!here>"
MAY_2024 = 1714573800  # 2024-05-01 14:30 UTC
PHOTO = "https://storage.example.com/location/abc/photo.jpg"

SMS = InboundPost(
    contact_label="Ada Lovelace",
    contact_address="+1 415 555 0100",
    channel="SMS",
    body="Running 10 min late",
    direction="inbound",
    thread_id=7,
)
EMAIL = dataclasses.replace(
    SMS,
    channel="Email",
    contact_address="ada@example.com",
    body="Thanks, got the invoice.",
    subject="Re: Invoice #12",
    email_from="Ada Lovelace <ada@example.com>",
    email_to=("billing@shop.example",),
    cc=("bob@example.com", "carol@example.com"),
)
OUTBOUND = dataclasses.replace(SMS, direction="outbound", source="workflow", status="delivered")


def _payload(text: str, blocks: list[Block]) -> list[dict[str, Any]]:
    return assert_message_accepted(text, blocks)


def _shown(text: str, blocks: list[Block]) -> str:
    return "\n".join([text, *mrkdwn_texts(_payload(text, blocks))])


def _links(shown: str) -> list[str]:
    """The `<http…|…>` links in `shown` (each must be one the builder wrote on purpose)."""
    return re.findall(r"<https?://[^<>|]+\|[^<>|]+>", shown, flags=re.IGNORECASE)


def _buttons(payload: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {
        element["action_id"]: element
        for block in payload
        if block["type"] == "actions"
        for element in block["elements"]
    }


def _section_texts(payload: list[dict[str, Any]]) -> list[str]:
    return [block["text"]["text"] for block in payload if block["type"] == "section"]


# ---------------------------------------------------------------- inbound_reply


def test_reply_shows_who_which_channel_and_the_text() -> None:
    text, blocks = inbound_reply(SMS)

    payload = _payload(text, blocks)
    assert _section_texts(payload) == ["*Ada Lovelace* via SMS", "Running 10 min late"]
    assert _buttons(payload) == {}
    assert text == "Ada Lovelace via SMS: Running 10 min late"
    assert all(t["verbatim"] for b in payload if b["type"] == "section" for t in [b["text"]])


def test_email_reply_shows_subject_from_to_and_cc() -> None:
    text, blocks = inbound_reply(EMAIL)

    header = _payload(text, blocks)[0]["text"]["text"]
    assert header.splitlines() == [
        "*Ada Lovelace* via Email",
        "*Subject:* Re: Invoice #12",
        "*From:* Ada Lovelace &lt;ada@example.com&gt;",
        "*To:* billing@shop.example",
        "*CC:* bob@example.com, carol@example.com",
    ]


def test_email_fields_are_left_out_for_other_channels() -> None:
    post = dataclasses.replace(EMAIL, channel="SMS")

    text, blocks = inbound_reply(post)

    assert _payload(text, blocks)[0]["text"]["text"] == "*Ada Lovelace* via SMS"


def test_an_html_email_is_shown_as_its_text() -> None:
    html = (
        "<html><head><style>p {color: red}</style></head><body>"
        '<div style="font-family: verdana">Testing &amp; <b>Email</b></div>'
        "<p>Second line</p><script>alert(1)</script></body></html>"
    )

    text, blocks = inbound_reply(dataclasses.replace(EMAIL, body=html))

    body = _section_texts(_payload(text, blocks))[1]
    assert body == "Testing &amp; Email\n\nSecond line"
    assert "Testing &amp; Email Second line" in text


@pytest.mark.parametrize(
    ("body", "shown"),
    [
        ("if a<b and c>d then <x>", "if a&lt;b and c&gt;d then &lt;x&gt;"),
        ("<b> is bold in HTML", "&lt;b&gt; is bold in HTML"),
        ("<not html>", "&lt;not html&gt;"),
    ],
)
def test_a_plain_text_email_with_angle_brackets_is_left_as_typed(body: str, shown: str) -> None:
    text, blocks = inbound_reply(dataclasses.replace(EMAIL, body=body))

    assert _section_texts(_payload(text, blocks))[1] == shown


def test_whatsapp_media_with_an_empty_body_shows_just_the_attachment() -> None:
    post = dataclasses.replace(SMS, channel="WhatsApp", body="", attachments=(PHOTO,))

    text, blocks = inbound_reply(post)

    sections = _section_texts(_payload(text, blocks))
    assert sections == ["*Ada Lovelace* via WhatsApp", f"*Attachment:*\n• <{PHOTO}|photo.jpg>"]
    assert text == "Ada Lovelace via WhatsApp: (1 attachment)"


@pytest.mark.parametrize(
    ("channel", "placeholder"),
    [
        ("SMS", "_(no text)_"),
        ("WhatsApp", "_(no text — a photo, voice note or file may be in HighLevel)_"),
    ],
)
def test_an_empty_body_without_attachments_says_so(channel: str, placeholder: str) -> None:
    text, blocks = inbound_reply(dataclasses.replace(SMS, channel=channel, body=" \n "))

    assert _section_texts(_payload(text, blocks))[1] == placeholder
    assert text.endswith(": (no text)")


def test_a_voicemail_shows_its_status_and_recording() -> None:
    post = dataclasses.replace(
        SMS,
        channel="CALL",
        body="",
        attachments=("https://rec.example/v/1.mp3",),
        status="voicemail",
    )

    text, blocks = inbound_reply(post)

    payload = _payload(text, blocks)
    assert payload[0]["text"]["text"] == "*Ada Lovelace* via Call"
    assert "<https://rec.example/v/1.mp3|1.mp3>" in payload[1]["text"]["text"]
    assert payload[-1]["elements"][0]["text"] == "Went to voicemail"


def test_a_customer_message_shows_no_delivery_status() -> None:
    text, blocks = inbound_reply(dataclasses.replace(SMS, status="delivered"))

    assert not any(b["type"] == "context" for b in _payload(text, blocks))


def test_an_outbound_post_given_to_inbound_reply_is_not_shown_as_the_customers() -> None:
    assert inbound_reply(OUTBOUND) == mirrored_outbound(OUTBOUND)
    assert "Sent from HighLevel" in inbound_reply(OUTBOUND)[0]


@pytest.mark.parametrize("build", BUILDERS)
def test_the_time_is_a_localised_slack_date_with_a_utc_fallback(build: Builder) -> None:
    text, blocks = build(dataclasses.replace(SMS, sent_at=MAY_2024 + 0.75))

    payload = _payload(text, blocks)
    context = next(b for b in payload if b["type"] == "context")["elements"][0]["text"]
    assert "<!date^1714573800^{date_short_pretty} {time}|2024-05-01 14:30 UTC>" in context, context
    assert foreign_markup(context) == []


@pytest.mark.parametrize("sent_at", [None, math.nan, math.inf, -5.0, 1e20])
def test_a_missing_or_impossible_time_is_left_out(sent_at: float | None) -> None:
    text, blocks = inbound_reply(dataclasses.replace(SMS, sent_at=sent_at))

    assert "<!date" not in _shown(text, blocks)


# ---------------------------------------------------------------- limits


@pytest.mark.parametrize("build", BUILDERS)
def test_a_long_body_is_clipped_at_the_section_limit_and_points_to_highlevel(
    build: Builder,
) -> None:
    body = "<&>" * 4000  # 12,000 characters, 36,000 once escaped

    text, blocks = build(dataclasses.replace(EMAIL, body=body))

    body_text = _section_texts(_payload(text, blocks))[1]
    assert len(body_text) <= 3000
    assert body_text.startswith("&lt;&amp;&gt;")
    assert "the full message, 12,000 characters, is in HighLevel" in body_text
    assert broken_entities(body_text) == []


@pytest.mark.parametrize("build", BUILDERS)
def test_huge_fields_stay_within_every_limit(build: Builder) -> None:
    long_url = "https://files.example/" + "a" * 1990
    post = dataclasses.replace(
        EMAIL,
        contact_label="L" * 40_000,
        contact_address="A" * 40_000,
        body="word " * 20_000,
        subject="S" * 40_000,
        email_from="F" * 40_000,
        email_to=("t" * 40_000,),
        cc=("c" * 40_000,) * 3,
        attachments=(long_url,) * 30,
        highlevel_user="U" * 40_000,
        source="S" * 40_000,
        status="X" * 40_000,
    )

    text, blocks = build(post)

    payload = _payload(text, blocks)  # includes the 40,000-character `text` limit
    assert len(text) < 1000
    assert len(payload) <= 20
    assert all(len(section) <= 3000 for section in _section_texts(payload))


@pytest.mark.parametrize("build", BUILDERS)
def test_the_fallback_text_previews_about_150_characters_of_the_body(build: Builder) -> None:
    body = " ".join(f"word{i:04d}" for i in range(500))

    text, blocks = build(dataclasses.replace(SMS, body=body))

    _payload(text, blocks)
    assert body[:140] in text
    assert body[:160] not in text
    assert "word0499" not in text


# ---------------------------------------------------------------- escaping


@pytest.mark.parametrize("build", BUILDERS)
def test_everything_from_highlevel_is_escaped(build: Builder) -> None:
    post = dataclasses.replace(
        EMAIL,
        contact_label=f"Eve {INJECTIONS}",
        contact_address=f"eve@example.com {INJECTIONS}",
        channel=f"Pigeon {INJECTIONS}",
        body=f"Hi {INJECTIONS}",
        subject=f"Re {INJECTIONS}",
        email_from=INJECTIONS,
        email_to=(INJECTIONS,),
        cc=(INJECTIONS,),
        attachments=(INJECTIONS, "https://evil.example/x|<!channel>"),
        source=INJECTIONS,
        highlevel_user=INJECTIONS,
        status=INJECTIONS,
        sent_at=MAY_2024,
    )

    text, blocks = build(post)

    shown = _shown(text, blocks)
    assert _links(shown) == []
    assert foreign_markup(shown) == []
    assert "<!channel>" not in shown and "<@U0EVE>" not in shown and "<!here>" not in shown
    assert "Hi &lt;!channel&gt; &lt;@U0EVE&gt; &lt;https://evil.example|click&gt;" in shown


@pytest.mark.parametrize("build", BUILDERS)
def test_email_injection_is_escaped_in_email_fields(build: Builder) -> None:
    post = dataclasses.replace(
        EMAIL, subject=INJECTIONS, email_from=INJECTIONS, email_to=(INJECTIONS,), cc=(INJECTIONS,)
    )

    text, blocks = build(post)

    header = _payload(text, blocks)[0]["text"]["text"]
    assert header.count("&lt;!channel&gt;") == 4
    assert foreign_markup(header) == []


@pytest.mark.parametrize(
    ("url", "line"),
    [
        (
            "https://cdn.example/a/b/report.pdf?alt=media&token=1",
            "• <https://cdn.example/a/b/report.pdf?alt=media&amp;token=1|report.pdf>",
        ),
        ("http://cdn.example/my%20photo.png", "• <http://cdn.example/my%20photo.png|my photo.png>"),
        ("HTTPS://cdn.example/", "• <HTTPS://cdn.example/|cdn.example>"),
        (
            "https://cdn.example/a%7Cb%3C!channel%3E.jpg",
            "• <https://cdn.example/a%7Cb%3C!channel%3E.jpg|a¦b&lt;!channel&gt;.jpg>",
        ),
        (
            "https://cdn.example/x%E2%80%AEgpj.exe",
            "• <https://cdn.example/x%E2%80%AEgpj.exe|xgpj.exe>",
        ),
        ("javascript:alert(1)", "• `javascript:alert(1)` _(not a web link, so not linked)_"),
        (
            "javascript://cdn.example/%0Aalert(1)",
            "• `javascript://cdn.example/%0Aalert(1)` _(not a web link, so not linked)_",
        ),
        (
            "ftp://cdn.example/file.pdf",
            "• `ftp://cdn.example/file.pdf` _(not a web link, so not linked)_",
        ),
        (
            "https://evil.example/x|<!channel>",
            "• `https://evil.example/x|&lt;!channel&gt;` _(not a web link, so not linked)_",
        ),
        (
            "https://evil.example/a b",
            "• `https://evil.example/a b` _(not a web link, so not linked)_",
        ),
        (
            "https://evil.example/a\n`b",
            "• `https://evil.example/a 'b` _(not a web link, so not linked)_",
        ),
        (
            "data:text/html,<b>x</b>",
            "• `data:text/html,&lt;b&gt;x&lt;/b&gt;` _(not a web link, so not linked)_",
        ),
        ("https:///no-host", "• `https:///no-host` _(not a web link, so not linked)_"),
        ("https://[::1", "• `https://[::1` _(not a web link, so not linked)_"),
        (
            "https://cdné.example/x.jpg",
            "• `https://cdné.example/x.jpg` _(not a web link, so not linked)_",
        ),
        ("  ", "• _(an empty link)_"),
    ],
)
def test_only_plain_http_links_are_linked_and_nothing_breaks_out(url: str, line: str) -> None:
    post = dataclasses.replace(SMS, attachments=(url,))

    text, blocks = inbound_reply(post)

    attachments = _section_texts(_payload(text, blocks))[2]
    assert attachments.splitlines() == ["*Attachment:*", line]
    for link in _links(attachments):
        attachments = attachments.replace(link, "")
    assert foreign_markup(attachments) == []


def test_many_attachments_are_counted_past_the_shown_ones() -> None:
    urls = tuple(f"https://cdn.example/f{i}.jpg" for i in range(ATTACHMENTS_SHOWN + 3))

    text, blocks = inbound_reply(dataclasses.replace(SMS, attachments=urls))

    shown = "\n".join(_section_texts(_payload(text, blocks)))
    assert f"*Attachments ({ATTACHMENTS_SHOWN + 3}):*" in shown
    assert len(_links(shown)) == ATTACHMENTS_SHOWN
    assert f"f{ATTACHMENTS_SHOWN - 1}.jpg" in shown and f"f{ATTACHMENTS_SHOWN}.jpg" not in shown
    assert "_…and 3 more in HighLevel_" in shown
    assert text.endswith(f"({ATTACHMENTS_SHOWN + 3} attachments)")


def test_long_attachment_links_are_spread_over_sections() -> None:
    urls = tuple(f"https://cdn.example/{i}/" + "a" * 1900 + ".jpg" for i in range(4))

    text, blocks = inbound_reply(dataclasses.replace(SMS, attachments=urls))

    sections = _section_texts(_payload(text, blocks))[2:]
    assert len(sections) == 4
    assert sum(len(_links(s)) for s in sections) == 4


# ---------------------------------------------------------------- channel labels


@pytest.mark.parametrize(
    ("channel", "label"),
    [
        ("SMS", "SMS"),
        ("Email", "Email"),
        ("WhatsApp", "WhatsApp"),
        ("whatsapp", "WhatsApp"),
        ("FB", "Facebook"),
        ("Live Chat", "Live chat"),
        ("Live_Chat", "Live chat"),
        ("TYPE_SMS", "SMS"),
        ("TYPE_EMAIL", "Email"),
        ("TYPE_WHATSAPP", "WhatsApp"),
        ("TYPE_FACEBOOK", "Facebook"),
        ("TYPE_INSTAGRAM", "Instagram"),
        ("TYPE_LIVE_CHAT", "Live chat"),
        ("TYPE_CUSTOM_PROVIDER_EMAIL", "Email"),
        ("CALL", "Call"),
        ("TYPE_CALL", "Call"),
        ("VoiceMail", "Voicemail"),
        ("Carrier Pigeon", "Carrier Pigeon"),
        ("", "message"),
    ],
)
def test_message_type_labels(channel: str, label: str) -> None:
    assert message_type_label(channel) == label


def test_a_type_email_post_gets_the_email_fields() -> None:
    text, blocks = inbound_reply(dataclasses.replace(EMAIL, channel="TYPE_EMAIL"))

    assert "*Subject:* Re: Invoice #12" in _payload(text, blocks)[0]["text"]["text"]


# ---------------------------------------------------------------- inbound_root


def test_root_introduces_the_conversation_and_has_a_reply_button() -> None:
    text, blocks = inbound_root(SMS)

    payload = _payload(text, blocks)
    assert payload[0]["text"]["text"] == (
        "New conversation from *Ada Lovelace* (+1 415 555 0100) via SMS"
    )
    assert payload[1]["text"]["text"] == "Running 10 min late"
    assert _buttons(payload) == {
        REPLY_ACTION: {
            "type": "button",
            "action_id": REPLY_ACTION,
            "value": "7",
            "text": {"type": "plain_text", "text": "Reply", "emoji": True},
        },
        # The conversation's controls: only on the root (replies have none).
        **root_controls(7),
    }
    assert text == "New conversation from Ada Lovelace via SMS: Running 10 min late"


def test_root_without_a_thread_id_has_no_reply_button() -> None:
    text, blocks = inbound_root(dataclasses.replace(SMS, thread_id=None))

    assert _buttons(_payload(text, blocks)) == {}


def test_root_does_not_repeat_an_address_that_is_the_label() -> None:
    post = dataclasses.replace(SMS, contact_label="+1 415 555 0100")

    text, blocks = inbound_root(post)

    assert _payload(text, blocks)[0]["text"]["text"] == (
        "New conversation from *+1 415 555 0100* via SMS"
    )


def test_root_for_a_message_sent_from_highlevel_says_so() -> None:
    text, blocks = inbound_root(OUTBOUND)

    payload = _payload(text, blocks)
    assert payload[0]["text"]["text"] == (
        "New conversation with *Ada Lovelace* (+1 415 555 0100) via SMS\n"
        "↗ *Sent from HighLevel* by a workflow"
    )
    assert payload[-2]["elements"][0]["text"] == "✓✓ Delivered"
    assert REPLY_ACTION in _buttons(payload)
    assert "sent from HighLevel" in text


# ---------------------------------------------------------------- mirrored_outbound


@pytest.mark.parametrize(
    ("source", "user", "by"),
    [
        ("app", None, "by a HighLevel user"),
        ("app", "Grace Hopper", "by Grace Hopper"),
        (None, "Grace Hopper", "by Grace Hopper"),
        ("workflow", None, "by a workflow"),
        ("campaign", None, "by a campaign"),
        ("bulk_actions", None, "by a bulk action"),
        ("api", None, "via the API"),
        ("Zapier", None, "(Zapier)"),
    ],
)
def test_mirrored_outbound_says_it_was_sent_from_highlevel_and_by_what(
    source: str | None, user: str | None, by: str
) -> None:
    post = dataclasses.replace(OUTBOUND, source=source, highlevel_user=user, status=None)

    text, blocks = mirrored_outbound(post)

    payload = _payload(text, blocks)
    assert payload[0]["text"]["text"] == f"↗ *Sent from HighLevel* {by} · SMS to *Ada Lovelace*"
    assert payload[1]["text"]["text"] == "Running 10 min late"
    assert text == f"↗ Sent from HighLevel {by} · SMS to Ada Lovelace: Running 10 min late"
    assert _buttons(payload) == {}


def test_mirrored_outbound_with_no_source_still_says_where_it_came_from() -> None:
    text, blocks = mirrored_outbound(dataclasses.replace(OUTBOUND, source=None, status=None))

    header = _payload(text, blocks)[0]["text"]["text"]
    assert header == "↗ *Sent from HighLevel* · SMS to *Ada Lovelace*"


@pytest.mark.parametrize(
    ("status", "line"),
    [
        ("delivered", "✓✓ Delivered"),
        ("Sent", "✓ Sent"),
        ("read", "Read"),
        ("failed", "✗ Failed"),
        ("undelivered", "✗ Not delivered"),
        ("warp_speed", "warp_speed"),
    ],
)
def test_mirrored_outbound_shows_its_status(status: str, line: str) -> None:
    post = dataclasses.replace(OUTBOUND, status=status, sent_at=MAY_2024)

    text, blocks = mirrored_outbound(post)

    context = _payload(text, blocks)[-1]["elements"][0]["text"]
    assert context == (
        f"Sent <!date^{MAY_2024}^{{date_short_pretty}} {{time}}|2024-05-01 14:30 UTC> · {line}"
    )
    assert text.endswith(f"({line})")


def test_mirrored_outbound_email_shows_its_email_fields() -> None:
    post = dataclasses.replace(EMAIL, direction="outbound", source="app", email_from="me@shop")

    text, blocks = mirrored_outbound(post)

    header = _payload(text, blocks)[0]["text"]["text"]
    assert header.splitlines()[:3] == [
        "↗ *Sent from HighLevel* by a HighLevel user · Email to *Ada Lovelace*",
        "*Subject:* Re: Invoice #12",
        "*From:* me@shop",
    ]


# ---------------------------------------------------------------- reactions and notices


@pytest.mark.parametrize(
    ("status", "reaction"),
    [
        ("delivered", "white_check_mark"),
        ("Delivered", "white_check_mark"),
        ("read", "eyes"),
        ("failed", "x"),
        ("undelivered", "x"),
        ("sent", None),
        ("pending", None),
        ("", None),
    ],
)
def test_status_reaction(status: str, reaction: str | None) -> None:
    assert status_reaction(status) == reaction


def test_shortcut_outside_a_thread_explains_how_to_start_a_conversation() -> None:
    text, blocks = shortcut_outside_thread_notice()

    shown = _shown(text, blocks)
    assert "isn't in a HighLevel conversation" in shown
    assert "`/sendsms &lt;number&gt; &lt;message&gt;`" in shown
    assert "`/sendsms` to open the composer" in shown
    assert "*Reply* button" in shown
    assert foreign_markup(shown) == []


def test_a_new_conversation_root_names_its_sub_account_when_given_one() -> None:
    post = dataclasses.replace(SMS, account="Acme <Dental>")
    text, blocks = inbound_root(post)
    shown = _shown(text, blocks)
    assert "HighLevel sub-account: *Acme &lt;Dental&gt;*" in shown
    assert text.startswith("[Acme &lt;Dental&gt;] New conversation")
    assert "sub-account" not in _shown(*inbound_root(SMS))
    assert "sub-account" not in _shown(*inbound_reply(post))
