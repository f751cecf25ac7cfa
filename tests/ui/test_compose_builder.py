"""The composer modal: blocks per channel, reading a submission back, context, errors."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from bot.compose import (
    COMPOSER_CHANNELS,
    ComposeContext,
    ComposeField,
    Draft,
    FieldErrors,
    ReplyContext,
    check_draft,
)
from bot.highlevel import EmailReplyMode, MessageChannel
from bot.sandbox.slack import build_state_values
from bot.ui.compose_builder import (
    COMPOSE_CALLBACK_ID,
    SELECT_OPTIONS_MAX,
    SubAccountOption,
    compose_view,
    field_errors,
)
from bot.ui.compose_state import (
    decode_context,
    encode_context,
    read_draft,
)
from tests.ui._slack_checks import assert_view_accepted, foreign_markup, mrkdwn_texts

NOW = 1_714_000_000
LATER = NOW + 3600
F = ComposeField

SMS_DRAFT = Draft(
    recipient="+1 415 555 0100",
    channel=MessageChannel.SMS,
    message="Running 10 min late",
    from_number="+14155550199",
    schedule_at=LATER,
)
EMAIL_DRAFT = Draft(
    recipient="ada@example.com",
    channel=MessageChannel.EMAIL,
    message="Your invoice is attached.",
    subject="Invoice #12",
    cc="bob@example.com, carol@example.com",
    bcc="audit@example.com",
    html="<p>Your invoice is attached.</p>",
)
NEW = ComposeContext(channel_id="C0SALES")
REPLY = ReplyContext(
    thread_id=7,
    contact_id="c0ntact1d",
    contact_label="Ada Lovelace",
    email_thread_id="thr-1",
    reply_message_id="msg-9",
    email_reply_mode=EmailReplyMode.REPLY_ALL,
)
REPLYING = ComposeContext(channel_id="C0SALES", thread_ts="1714000000.000100", reply=REPLY)


def _view(draft: Draft, context: ComposeContext = NEW, **kwargs: Any) -> dict[str, Any]:
    return assert_view_accepted(compose_view(draft, context, now=NOW, **kwargs))


def _inputs(view: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {b["block_id"]: b for b in view["blocks"] if b["type"] == "input"}


def _untouched_answers(view: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """What each input holds when the person submits without changing anything."""
    answers: dict[str, dict[str, Any]] = {}
    for block_id, block in _inputs(view).items():
        element = block["element"]
        if element["type"] == "plain_text_input":
            answer = element.get("initial_value")
        elif element["type"] in {"static_select", "external_select", "radio_buttons"}:
            answer = element.get("initial_option")
        else:
            answer = element.get("initial_date_time")
        answers[block_id] = {element["action_id"]: answer}
    return answers


def _submitted(view: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """`view.state.values` as Slack sends it; `changes` are what the person typed or cleared."""
    answers = _untouched_answers(view)
    for block_id, answer in changes.items():
        answers[block_id] = {block_id: answer}
    values: dict[str, Any] = build_state_values(view["blocks"], answers, submitting=False)["values"]
    for block_id, answer in changes.items():
        if answer is None or answer == "":
            # A cleared input: Slack sends its entry with a null value. (build_state_values
            # reads an empty answer as "untouched" and shows the initial value instead.)
            entry = values[block_id][block_id]
            for key in entry.keys() - {"type"}:
                entry[key] = None
    return values


# ---------------------------------------------------------------- the view


def test_sms_view_has_the_phone_fields_and_no_email_fields() -> None:
    view = _view(SMS_DRAFT)

    inputs = _inputs(view)
    assert list(inputs) == [
        F.RECIPIENT,
        F.CHANNEL,
        F.TEMPLATE,
        F.MESSAGE,
        F.FILES,
        F.FROM_NUMBER,
        F.TO_NUMBER,
        F.SCHEDULE,
    ]
    assert all(block["element"]["action_id"] == block_id for block_id, block in inputs.items())
    assert view["callback_id"] == COMPOSE_CALLBACK_ID == "compose"
    assert view["title"]["text"] == "Send a message"
    assert view["submit"]["text"] == "Schedule"
    assert view["close"]["text"] == "Cancel"
    assert view["notify_on_close"] is False
    assert inputs[F.RECIPIENT]["element"]["initial_option"]["value"] == "+1 415 555 0100"
    assert inputs[F.CHANNEL]["element"]["initial_option"]["value"] == "SMS"
    assert inputs[F.SCHEDULE]["element"]["initial_date_time"] == LATER
    assert inputs[F.FROM_NUMBER]["optional"] is True
    assert inputs[F.TO_NUMBER]["optional"] is True
    assert inputs[F.TEMPLATE]["optional"] is True
    # Files alone may make a send (check_draft asks for text or a file).
    assert inputs[F.MESSAGE]["optional"] is True
    assert inputs[F.RECIPIENT]["optional"] is False


def test_email_view_has_subject_cc_bcc_html_and_no_sending_number() -> None:
    view = _view(EMAIL_DRAFT)

    inputs = _inputs(view)
    assert list(inputs) == [
        F.RECIPIENT,
        F.CHANNEL,
        F.TEMPLATE,
        F.MESSAGE,
        F.SUBJECT,
        F.CC,
        F.BCC,
        F.HTML,
        F.EMAIL_FROM,
        F.EMAIL_TO,
        F.FILES,
        F.SCHEDULE,
    ]
    assert view["submit"]["text"] == "Send"
    assert inputs[F.MESSAGE]["optional"] is True  # the HTML may carry the body
    assert inputs[F.MESSAGE]["hint"]["text"] == "Plain text; add HTML below if you need formatting."
    assert inputs[F.SUBJECT]["optional"] is False
    assert inputs[F.SUBJECT]["element"]["initial_value"] == "Invoice #12"
    assert {
        inputs[f]["optional"] for f in (F.CC, F.BCC, F.HTML, F.SCHEDULE, F.EMAIL_FROM, F.EMAIL_TO)
    } == {True}
    assert inputs[F.HTML]["element"]["multiline"] is True


def test_the_app_hears_the_recipient_template_channel_and_typing() -> None:
    inputs = _inputs(_view(SMS_DRAFT))

    # The recipient is a search: Slack asks the app for options as the person types.
    assert inputs[F.RECIPIENT]["element"]["type"] == "external_select"
    assert inputs[F.RECIPIENT]["element"]["min_query_length"] == 1
    assert inputs[F.RECIPIENT]["dispatch_action"] is True
    assert inputs[F.TEMPLATE]["element"]["type"] == "external_select"
    assert inputs[F.TEMPLATE]["dispatch_action"] is True
    assert inputs[F.CHANNEL]["dispatch_action"] is True
    assert inputs[F.MESSAGE]["dispatch_action"] is True
    assert inputs[F.MESSAGE]["element"]["dispatch_action_config"] == {
        "trigger_actions_on": ["on_character_entered"]
    }
    assert "dispatch_action" not in inputs[F.SCHEDULE]


def test_every_channel_is_offered_with_its_label_when_the_contact_is_unknown() -> None:
    view = _view(Draft())

    options = _inputs(view)[F.CHANNEL]["element"]["options"]
    assert [o["value"] for o in options] == [c.value for c in COMPOSER_CHANNELS]
    assert [o["text"]["text"] for o in options][:3] == ["SMS", "Email", "WhatsApp"]
    assert not any("left out" in t for t in mrkdwn_texts(view))


def test_channels_the_contact_cannot_receive_are_left_out_with_a_note() -> None:
    context = dataclasses.replace(NEW, available=(MessageChannel.EMAIL, MessageChannel.FB))

    view = _view(SMS_DRAFT, context)  # SMS was chosen, but the contact has no phone

    select = _inputs(view)[F.CHANNEL]["element"]
    assert [o["value"] for o in select["options"]] == ["Email", "FB"]
    assert select["initial_option"]["value"] == "Email"
    assert F.SUBJECT in _inputs(view)  # the fields follow the channel actually selected
    assert F.FROM_NUMBER not in _inputs(view)
    assert any("left out" in t and "Do Not Disturb" in t for t in mrkdwn_texts(view))


def test_a_contact_who_can_receive_everything_gets_no_note() -> None:
    view = _view(SMS_DRAFT, dataclasses.replace(NEW, available=COMPOSER_CHANNELS))

    assert not any("left out" in t for t in mrkdwn_texts(view))


def test_a_contact_who_can_receive_nothing_still_gets_a_valid_view_with_a_warning() -> None:
    view = _view(SMS_DRAFT, dataclasses.replace(NEW, available=()))

    assert [o["value"] for o in _inputs(view)[F.CHANNEL]["element"]["options"]] == ["SMS"]
    assert any("can't receive any" in t for t in mrkdwn_texts(view))


def test_reply_mode_shows_the_contact_instead_of_a_recipient_input() -> None:
    view = _view(dataclasses.replace(EMAIL_DRAFT, recipient=""), REPLYING)

    assert F.RECIPIENT not in _inputs(view)
    texts = mrkdwn_texts(view)
    assert "To: *Ada Lovelace*" in texts
    assert "Replies in the customer's email thread." in texts
    mode = _inputs(view)[F.REPLY_MODE]["element"]
    assert mode["type"] == "radio_buttons"
    assert mode["initial_option"]["value"] == "reply_all"  # as the thread was opened
    assert view["title"]["text"] == "Reply to Ada Lovelace"
    assert decode_context(view["private_metadata"]) == REPLYING


def test_reply_or_reply_all_is_a_choice_in_email_replies_only() -> None:
    context = dataclasses.replace(
        REPLYING,
        reply=dataclasses.replace(
            REPLY, email_reply_mode=EmailReplyMode.REPLY, reply_all_cc="bob@example.com"
        ),
    )

    email = _view(EMAIL_DRAFT, context)
    chosen = _view(dataclasses.replace(EMAIL_DRAFT, reply_all=True), context)
    sms = _view(SMS_DRAFT, context)

    mode = _inputs(email)[F.REPLY_MODE]["element"]
    assert mode["initial_option"]["value"] == "reply"
    assert "bob@example.com" in json.dumps(mode["options"])  # who reply all adds
    assert _inputs(chosen)[F.REPLY_MODE]["element"]["initial_option"]["value"] == "reply_all"
    assert F.REPLY_MODE not in _inputs(sms)
    assert not any("email thread" in t for t in mrkdwn_texts(sms))


def test_a_200_character_contact_name_fits_the_title_and_is_escaped() -> None:
    name = "<!channel> " + "W" * 189
    context = dataclasses.replace(REPLYING, reply=dataclasses.replace(REPLY, contact_label=name))

    view = _view(SMS_DRAFT, context)

    assert len(view["title"]["text"]) <= 24
    assert view["title"]["text"].startswith("Reply to <!channel>")  # plain text: shown as typed
    assert view["title"]["text"].endswith("…")
    assert all(foreign_markup(t) == [] for t in mrkdwn_texts(view) if t != view["title"]["text"])


@pytest.mark.parametrize(
    ("message", "hint"),
    [
        ("a" * 42, "42 characters · 1 segment (GSM-7). Up to 1,600 characters."),
        ("a" * 160, "160 characters · 1 segment (GSM-7). Up to 1,600 characters."),
        ("a" * 161, "161 characters · 2 segments (GSM-7). Up to 1,600 characters."),
        ("ć" * 71, "71 characters · 2 segments (UCS-2). Up to 1,600 characters."),
    ],
)
def test_the_sms_hint_counts_characters_and_segments(message: str, hint: str) -> None:
    view = _view(dataclasses.replace(SMS_DRAFT, message=message))

    assert _inputs(view)[F.MESSAGE]["hint"]["text"] == hint


def test_the_sms_hint_warns_past_the_hard_limit() -> None:
    view = _view(dataclasses.replace(SMS_DRAFT, message="a" * 1601))

    hint = _inputs(view)[F.MESSAGE]["hint"]["text"]
    assert hint.startswith("⚠ Too long for SMS")
    assert "1,601" in hint and "1,600" in hint


def test_whatsapp_gets_the_measure_without_the_sms_limit() -> None:
    view = _view(
        dataclasses.replace(SMS_DRAFT, channel=MessageChannel.WHATSAPP, message="a" * 1601)
    )

    hint = _inputs(view)[F.MESSAGE]["hint"]["text"]
    assert hint == "1,601 characters · 11 segments (GSM-7)."
    assert F.FROM_NUMBER in _inputs(view)


def test_a_long_message_renders_and_no_input_asks_slack_for_more_than_3000() -> None:
    # Slack refuses max_length above 3000, so the 10,000-character limit is our own check.
    view = _view(dataclasses.replace(EMAIL_DRAFT, message="m" * 10_000, html="h" * 10_000))

    assert _inputs(view)[F.MESSAGE]["element"]["initial_value"] == "m" * 10_000
    assert "max_length" not in _inputs(view)[F.MESSAGE]["element"]


def test_schedule_hint_mentions_the_time_zone_and_a_past_time() -> None:
    future = _inputs(_view(SMS_DRAFT, tz_hint="Times are in America/Chicago."))[F.SCHEDULE]
    past = _inputs(_view(dataclasses.replace(SMS_DRAFT, schedule_at=NOW - 60)))[F.SCHEDULE]
    unset = _inputs(_view(dataclasses.replace(SMS_DRAFT, schedule_at=None)))[F.SCHEDULE]

    assert future["hint"]["text"] == "Leave empty to send now. Times are in America/Chicago."
    assert "passed" in past["hint"]["text"]
    assert unset["hint"]["text"] == "Leave empty to send now."
    assert "initial_date_time" not in unset["element"]


# ---------------------------------------------------------------- reading a submission


@pytest.mark.parametrize(
    ("draft", "context"),
    [
        (SMS_DRAFT, NEW),
        (EMAIL_DRAFT, NEW),
        (dataclasses.replace(SMS_DRAFT, channel=MessageChannel.WHATSAPP, schedule_at=None), NEW),
        (dataclasses.replace(EMAIL_DRAFT, recipient="", message=""), REPLYING),
        (Draft(recipient="x", channel=MessageChannel.FB, message="hi"), NEW),
    ],
)
def test_an_untouched_composer_reads_back_as_the_same_draft(
    draft: Draft, context: ComposeContext
) -> None:
    view = _view(draft, context)

    # An email reply's reply-mode choice is always read (as the view showed it).
    shown_mode = context.reply is not None and draft.channel is MessageChannel.EMAIL
    expected = dataclasses.replace(draft, reply_all=True) if shown_mode else draft
    assert read_draft(_submitted(view)) == expected


def test_hidden_fields_come_from_the_fallback() -> None:
    draft = dataclasses.replace(SMS_DRAFT, subject="kept", cc="kept@example.com")
    view = _view(draft, REPLYING)  # no recipient, no email fields

    assert read_draft(_submitted(view), fallback=draft) == draft
    assert read_draft(_submitted(view)) == dataclasses.replace(
        draft, recipient="", subject="", cc=""
    )


def test_what_the_person_changed_is_read() -> None:
    view = _view(SMS_DRAFT)

    draft = read_draft(
        _submitted(
            view,
            message="Now 20 min late",
            from_number="",
            schedule=None,
            channel={"text": {"type": "plain_text", "text": "Email"}, "value": "Email"},
        )
    )

    assert draft == dataclasses.replace(
        SMS_DRAFT,
        message="Now 20 min late",
        from_number="",
        schedule_at=None,
        channel=MessageChannel.EMAIL,
    )


def test_an_unknown_channel_reads_as_sms() -> None:
    values = {
        "channel": {"channel": {"type": "static_select", "selected_option": {"value": "Owl"}}}
    }

    assert read_draft(values, fallback=EMAIL_DRAFT).channel is MessageChannel.SMS


def test_state_as_slack_sends_it_for_cleared_inputs() -> None:
    values = {
        "message": {"message": {"type": "plain_text_input", "value": None}},
        "schedule": {"schedule": {"type": "datetimepicker", "selected_date_time": None}},
        "channel": {"channel": {"type": "static_select", "selected_option": None}},
    }

    draft = read_draft(values, fallback=SMS_DRAFT)

    assert draft.message == ""
    assert draft.schedule_at is None
    assert draft.channel is MessageChannel.SMS
    assert draft.recipient == SMS_DRAFT.recipient
    assert read_draft({}) == Draft()


# ---------------------------------------------------------------- private_metadata


@pytest.mark.parametrize(
    "context",
    [
        NEW,
        REPLYING,
        dataclasses.replace(NEW, available=()),
        dataclasses.replace(NEW, available=(MessageChannel.EMAIL, MessageChannel.WHATSAPP)),
        dataclasses.replace(
            REPLYING, reply=ReplyContext(thread_id=1, contact_id="c", contact_label="Zoë 😀")
        ),
    ],
)
def test_context_round_trips(context: ComposeContext) -> None:
    text = encode_context(context)

    assert decode_context(text) == context
    assert len(text) < 400


def test_a_huge_label_is_clipped_so_the_context_fits_private_metadata() -> None:
    context = dataclasses.replace(
        REPLYING,
        available=COMPOSER_CHANNELS,
        reply=dataclasses.replace(REPLY, contact_label="Ü" * 10_000),
    )

    text = encode_context(context)
    decoded = decode_context(text)

    assert len(text) <= 3000
    assert decoded.reply is not None
    assert decoded.reply.contact_label == "Ü" * 79 + "…"
    assert decoded == dataclasses.replace(
        context, reply=dataclasses.replace(REPLY, contact_label="Ü" * 79 + "…")
    )
    assert_view_accepted(compose_view(SMS_DRAFT, context, now=NOW))


def test_absurd_ids_are_refused_rather_than_cut() -> None:
    with pytest.raises(ValueError, match="3000"):
        encode_context(ComposeContext(channel_id="C" * 4000))


@pytest.mark.parametrize(
    "garbage",
    [
        "",
        "not json",
        "[]",
        "null",
        '{"t": "1.2"}',
        '{"c": 5}',
        '{"c": ""}',
        '{"c": "C1", "a": ["Owl"]}',
        '{"c": "C1", "a": "SMS"}',
        '{"c": "C1", "a": [1]}',
        '{"c": "C1", "zz": 1}',
        '{"c": "C1", "r": []}',
        '{"c": "C1", "r": {"i": "7", "k": "c", "l": "Ada"}}',
        '{"c": "C1", "r": {"i": true, "k": "c", "l": "Ada"}}',
        '{"c": "C1", "r": {"i": 7, "k": "c"}}',
        '{"c": "C1", "r": {"i": 7, "k": "c", "l": "Ada", "x": "forward"}}',
        '{"c": "C1", "r": {"i": 7, "k": "c", "l": "Ada", "q": 1}}',
        json.dumps({"c": "C" * 3001}),
    ],
)
def test_decode_refuses_garbage(garbage: str) -> None:
    with pytest.raises(ValueError):
        decode_context(garbage)


# ---------------------------------------------------------------- errors


def test_errors_map_to_their_blocks_and_are_clipped() -> None:
    errors = FieldErrors({F.SUBJECT: "An email needs a subject.", F.CC: "x" * 500})

    mapped = field_errors(errors, _inputs(_view(EMAIL_DRAFT)))

    assert mapped == {"subject": "An email needs a subject.", "cc": "x" * 149 + "…"}
    assert field_errors(errors) == {"subject": "An email needs a subject.", "cc": "x" * 149 + "…"}


def test_a_recipient_error_in_reply_mode_moves_to_the_message_block() -> None:
    view = _view(SMS_DRAFT, REPLYING)
    errors = FieldErrors({F.RECIPIENT: "Add a recipient.", F.MESSAGE: "Write a message."})

    mapped = field_errors(errors, [b["block_id"] for b in view["blocks"]])

    assert mapped == {"message": "Write a message. To: Add a recipient."}
    assert set(mapped) <= set(_inputs(view))


def test_moved_and_own_errors_share_the_150_characters() -> None:
    errors = FieldErrors({F.RECIPIENT: "r" * 400, F.MESSAGE: "m" * 400})

    [message] = field_errors(errors, ["message", "schedule"]).values()

    assert len(message) <= 150
    assert "mmm" in message and "To: rrr" in message


def test_errors_from_the_real_checks_land_on_blocks_the_view_has() -> None:
    draft = Draft(recipient="not a number", channel=MessageChannel.EMAIL, subject="", cc="nope")
    checked = check_draft(draft, now=NOW, region="US")
    assert isinstance(checked, FieldErrors)
    view = _view(draft)

    mapped = field_errors(checked, [b["block_id"] for b in view["blocks"]])

    assert set(mapped) == {"recipient", "message", "subject", "cc"}
    assert set(mapped) <= set(_inputs(view))
    assert all(0 < len(text) <= 150 for text in mapped.values())


# ---------------------------------------------------------------- the sub-account select

ACCOUNTS = (
    SubAccountOption("locA", "Acme Dental"),
    SubAccountOption("locB", "Beta <Realty> & Sons"),
)


def test_the_sub_account_select_comes_first_required_and_live() -> None:
    view = _view(SMS_DRAFT, sub_accounts=ACCOUNTS)
    first = view["blocks"][0]
    assert first["block_id"] == F.SUB_ACCOUNT
    assert first["element"]["action_id"] == F.SUB_ACCOUNT
    assert first["optional"] is False and first["dispatch_action"] is True
    assert [o["value"] for o in first["element"]["options"]] == ["locA", "locB"]
    # plain_text: shown as typed, no markup to escape.
    assert first["element"]["options"][1]["text"]["text"] == "Beta <Realty> & Sons"
    assert "initial_option" not in first["element"]
    chosen = _view(dataclasses.replace(SMS_DRAFT, location_id="locB"), sub_accounts=ACCOUNTS)
    assert chosen["blocks"][0]["element"]["initial_option"]["value"] == "locB"


def test_no_select_without_choices_or_in_a_reply_or_a_thread() -> None:
    assert F.SUB_ACCOUNT not in _inputs(_view(SMS_DRAFT))
    assert F.SUB_ACCOUNT not in _inputs(_view(SMS_DRAFT, REPLYING, sub_accounts=ACCOUNTS))
    in_thread = ComposeContext(channel_id="C0SALES", thread_ts="1714000000.000100")
    assert F.SUB_ACCOUNT not in _inputs(_view(SMS_DRAFT, in_thread, sub_accounts=ACCOUNTS))


def test_the_chosen_sub_account_is_read_back_and_cleared_reads_empty() -> None:
    view = _view(SMS_DRAFT, sub_accounts=ACCOUNTS)
    values = _submitted(view, sub_account="locA")
    assert read_draft(values).location_id == "locA"
    assert read_draft(_submitted(view, sub_account=None)).location_id == ""
    # Without the select (the channel decides), the fallback's stays.
    plain = _view(SMS_DRAFT)
    fallback = dataclasses.replace(SMS_DRAFT, location_id="locZ")
    assert read_draft(_submitted(plain), fallback=fallback).location_id == "locZ"


def test_many_sub_accounts_fit_one_select() -> None:
    many = tuple(SubAccountOption(f"loc{i}", f"Client {i} " + "x" * 100) for i in range(150))
    view = _view(SMS_DRAFT, sub_accounts=many)
    options = view["blocks"][0]["element"]["options"]
    assert len(options) == SELECT_OPTIONS_MAX
    assert all(len(o["text"]["text"]) <= 75 for o in options)


def test_a_sub_account_error_without_the_select_lands_on_the_message() -> None:
    errors = FieldErrors({F.SUB_ACCOUNT: "several are connected now"})
    present = [b["block_id"] for b in _view(SMS_DRAFT)["blocks"]]
    assert field_errors(errors, present) == {"message": "Sub-account: several are connected now"}
    with_select = [b["block_id"] for b in _view(SMS_DRAFT, sub_accounts=ACCOUNTS)["blocks"]]
    assert field_errors(errors, with_select) == {"sub_account": "several are connected now"}
