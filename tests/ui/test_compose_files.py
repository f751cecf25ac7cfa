"""Files in the composer (issue 15): the file input, the message's files as checkboxes, reading
them back, their checks, carrying them in private_metadata, and how a send's post shows them."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from bot.compose import (
    ComposeContext,
    ComposeField,
    Draft,
    FieldErrors,
    ReplyContext,
    check_draft,
    files_problem,
    short_file_name,
)
from bot.files import ALLOWED_EXTENSIONS, MAX_FILES_PER_SEND, SlackFileRef
from bot.highlevel import MessageChannel
from bot.sandbox.slack import build_state_values
from bot.sandbox.slack._validation import MESSAGE_BLOCKS_MAX, block_problems
from bot.ui.compose_builder import ERROR_MESSAGE_MAX, compose_view, field_errors
from bot.ui.compose_files_builder import MESSAGE_FILES_LABEL, MESSAGE_FILES_NOTE_BLOCK
from bot.ui.compose_state import (
    PRIVATE_METADATA_MAX,
    decode_context,
    encode_context,
    file_refs,
    fit_context,
    read_draft,
)
from bot.ui.thread_builder import PostStatus, SendPost, reply_message, root_message
from tests.ui._slack_checks import (
    assert_message_accepted,
    assert_view_accepted,
    broken_entities,
    foreign_markup,
    mrkdwn_texts,
)

NOW = 1_714_000_000
F = ComposeField
MB = 1024 * 1024

PDF = SlackFileRef("F0PDF", "invoice.pdf", "application/pdf", 120_000)
BIG_PDF = SlackFileRef("F0BIG", "brochure.pdf", "application/pdf", 7 * MB)
PHOTO = SlackFileRef("F0JPG", "photo1.jpg", "image/jpeg", 2 * MB)
PNG = SlackFileRef("F0PNG", "photo2.png", "image/png", 300_000)
EXE = SlackFileRef("F0EXE", "setup.exe", "application/x-msdownload", 40_000)

NEW = ComposeContext(channel_id="C0SALES")
REPLY = ReplyContext(thread_id=7, contact_id="c0ntact1d", contact_label="Ada Lovelace")
FROM_MESSAGE = ComposeContext(
    channel_id="C0SALES",
    thread_ts="1714000000.000100",
    reply=REPLY,
    message_files=(PDF, PHOTO),
)
SMS = Draft(recipient="+1 415 555 0100", channel=MessageChannel.SMS, message="Here you go")


def _view(draft: Draft, context: ComposeContext = NEW) -> dict[str, Any]:
    return assert_view_accepted(compose_view(draft, context, now=NOW))


def _blocks(view: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {b["block_id"]: b for b in view["blocks"] if "block_id" in b}


def _api(file: SlackFileRef, **extra: Any) -> dict[str, Any]:
    """The file object Slack sends for `file` (a message's `files`, a file_input's state)."""
    return {**file.to_json(), "title": file.name, "filetype": "x", "url_private": "u", **extra}


def _state(
    view: dict[str, Any], *, picked: list[SlackFileRef] | None = None, kept: list[str] | None = None
) -> dict[str, Any]:
    """`view.state.values` after the person picked files and (un)checked message files."""
    answers: dict[str, dict[str, Any]] = {}
    if picked is not None:
        answers[F.FILES] = {F.FILES: [_api(f) for f in picked]}
    if kept is not None:
        entry = {
            "type": "checkboxes",
            "selected_options": [
                {"value": v, "text": {"type": "plain_text", "text": v}} for v in kept
            ],
        }
        answers[F.MESSAGE_FILES] = {F.MESSAGE_FILES: entry}
    values: dict[str, Any] = build_state_values(view["blocks"], answers, submitting=False)["values"]
    return values


def _errors(draft: Draft, *, replying: bool = False) -> dict[ComposeField, str]:
    checked = check_draft(draft, now=NOW, region="US", replying=replying)
    assert isinstance(checked, FieldErrors), checked
    return checked.errors


# ---------------------------------------------------------------- the file input


def test_a_channel_that_takes_files_gets_an_optional_file_input_with_its_limit() -> None:
    block = _blocks(_view(SMS))[F.FILES]

    assert block["type"] == "input"
    assert block["optional"] is True
    assert block["element"] == {
        "type": "file_input",
        "action_id": "files",
        "filetypes": list(ALLOWED_EXTENSIONS),
        "max_files": MAX_FILES_PER_SEND,
    }
    hint = block["hint"]["text"]
    assert "5 MB" in hint and "SMS" in hint and "PDF" in hint


def test_whatsapp_says_its_own_limit() -> None:
    view = _view(dataclasses.replace(SMS, channel=MessageChannel.WHATSAPP))

    assert "100 MB" in _blocks(view)[F.FILES]["hint"]["text"]


@pytest.mark.parametrize(
    "channel",
    [MessageChannel.SMS, MessageChannel.EMAIL, MessageChannel.WHATSAPP, MessageChannel.LIVE_CHAT],
)
def test_the_message_is_optional_where_files_alone_can_go(channel: MessageChannel) -> None:
    view = _view(dataclasses.replace(SMS, channel=channel))

    assert _blocks(view)[F.MESSAGE]["optional"] is True


def test_a_channel_that_cannot_carry_files_has_no_file_input() -> None:
    view = _view(dataclasses.replace(SMS, channel=MessageChannel.CUSTOM))

    assert F.FILES not in _blocks(view)
    assert _blocks(view)[F.MESSAGE]["optional"] is False


def test_picked_files_keep_their_input_when_the_channel_changes_to_one_without_files() -> None:
    # Slack keeps an input's state through views.update only while the block is there, so the
    # block stays and says what to do.
    view = _view(dataclasses.replace(SMS, channel=MessageChannel.CUSTOM, files=(PDF,)))

    block = _blocks(view)[F.FILES]
    assert block["element"]["type"] == "file_input"
    assert "can't carry files" in block["hint"]["text"]


def test_picked_files_survive_a_re_render_through_the_state() -> None:
    first = _view(SMS)
    state = _state(first, picked=[PDF, PHOTO])
    draft = read_draft(state)

    second = _view(dataclasses.replace(draft, channel=MessageChannel.EMAIL))

    assert F.FILES in _blocks(second)  # same block_id and action_id: Slack keeps the files
    assert read_draft(state).files == (PDF, PHOTO)


# ---------------------------------------------------------------- the message's files


def test_the_messages_files_are_checkboxes_all_checked() -> None:
    draft = dataclasses.replace(SMS, recipient="", files=(PDF, PHOTO))

    view = _view(draft, FROM_MESSAGE)

    block = _blocks(view)[F.MESSAGE_FILES]
    assert block["label"]["text"] == MESSAGE_FILES_LABEL == "Attached from the message"
    assert block["optional"] is True
    element = block["element"]
    assert element["type"] == "checkboxes" and element["action_id"] == "message_files"
    assert [o["value"] for o in element["options"]] == ["F0PDF", "F0JPG"]
    assert [o["text"]["text"] for o in element["options"]] == ["invoice.pdf", "photo1.jpg"]
    assert [o["value"] for o in element["initial_options"]] == ["F0PDF", "F0JPG"]
    assert element["options"][1]["description"]["text"] == "JPG · 2 MB"
    order = [b.get("block_id") for b in view["blocks"]]
    assert order.index(F.MESSAGE_FILES) == order.index(F.FILES) - 1


def test_an_unchecked_message_file_stays_unchecked_on_a_re_render() -> None:
    view = _view(dataclasses.replace(SMS, files=(PHOTO,)), FROM_MESSAGE)

    element = _blocks(view)[F.MESSAGE_FILES]["element"]
    assert [o["value"] for o in element["initial_options"]] == ["F0JPG"]
    none_kept = _view(SMS, FROM_MESSAGE)
    assert "initial_options" not in _blocks(none_kept)[F.MESSAGE_FILES]["element"]


def test_message_files_on_a_channel_without_files_say_so() -> None:
    draft = dataclasses.replace(SMS, channel=MessageChannel.CUSTOM, files=(PDF,))

    view = _view(draft, FROM_MESSAGE)

    assert "can't carry files" in _blocks(view)[F.MESSAGE_FILES]["hint"]["text"]
    assert F.FILES not in _blocks(view)  # nothing picked: no input to keep


def test_read_draft_keeps_checked_message_files_first_then_picked_ones_each_once() -> None:
    view = _view(dataclasses.replace(SMS, files=(PDF, PHOTO)), FROM_MESSAGE)

    state = _state(view, picked=[PNG, PDF, EXE], kept=["F0PDF"])
    draft = read_draft(state, message_files=FROM_MESSAGE.message_files)

    assert draft.files == (PDF, PNG, EXE)


def test_untouched_checkboxes_keep_every_message_file() -> None:
    view = _view(dataclasses.replace(SMS, files=(PDF, PHOTO)), FROM_MESSAGE)

    state = _state(view)  # Slack submits the initial options
    draft = read_draft(state, message_files=FROM_MESSAGE.message_files)

    assert draft.files == (PDF, PHOTO)
    assert read_draft({}, message_files=(PDF,)).files == (PDF,)  # no block: kept as shown


def test_read_draft_takes_the_file_inputs_files_in_order_and_skips_junk() -> None:
    state: dict[str, dict[str, dict[str, Any]]] = {
        F.FILES: {
            F.FILES: {
                "type": "file_input",
                "files": [
                    _api(PHOTO),
                    "not a file",
                    {"id": ""},
                    _api(PDF, size="big"),
                    {"id": "F0GONE", "mode": "tombstone"},
                    _api(PHOTO),
                ],
            }
        }
    }

    files = read_draft(state).files

    assert files == (PHOTO, dataclasses.replace(PDF, size=0))
    assert read_draft({F.FILES: {F.FILES: {"type": "file_input", "files": None}}}).files == ()
    assert read_draft({}, fallback=Draft(files=(PNG,))).files == (PNG,)


def test_file_refs_skip_deleted_external_and_hidden_files() -> None:
    objects = [
        _api(PDF),
        {"id": "F0DEL", "mode": "tombstone"},
        _api(PNG, mode="external", is_external=True),
        _api(EXE, mode="hidden_by_limit"),
        {"id": "F0NONAME", "title": "Scan"},
        _api(PDF),
    ]

    refs = file_refs(objects)

    assert [r.id for r in refs] == ["F0PDF", "F0NONAME"]
    assert refs[1].name == "Scan"
    assert file_refs(None) == () and file_refs({"id": "F1"}) == ()


# ---------------------------------------------------------------- checks


def test_a_7_mb_pdf_for_sms_names_the_file_and_the_limit() -> None:
    errors = _errors(dataclasses.replace(SMS, files=(BIG_PDF,)))

    assert list(errors) == [F.FILES]
    assert "brochure.pdf" in errors[F.FILES] and "5 MB" in errors[F.FILES]
    assert "7 MB" in errors[F.FILES]


def test_the_same_pdf_goes_by_whatsapp() -> None:
    checked = check_draft(
        dataclasses.replace(SMS, channel=MessageChannel.WHATSAPP, files=(BIG_PDF,)),
        now=NOW,
        region="US",
    )

    assert not isinstance(checked, FieldErrors)
    assert checked.files == (BIG_PDF,)


def test_a_type_highlevel_refuses_names_the_file_and_its_type() -> None:
    errors = _errors(dataclasses.replace(SMS, files=(PDF, EXE)))

    assert "setup.exe" in errors[F.FILES] and "type" in errors[F.FILES]
    assert "invoice.pdf" not in errors[F.FILES]


def test_several_refused_files_lead_with_the_limit_and_name_each() -> None:
    second_big = dataclasses.replace(BIG_PDF, id="F0BIG2", name="catalogue.pdf", size=9 * MB)
    draft = dataclasses.replace(SMS, files=(BIG_PDF, EXE, second_big))

    message = _errors(draft)[F.FILES]

    assert message.startswith("Over SMS's 5 MB limit: brochure.pdf (7 MB), catalogue.pdf (9 MB).")
    assert "setup.exe" in message
    shown = field_errors(FieldErrors({F.FILES: message}), [F.MESSAGE, F.FILES])[F.FILES]
    assert len(shown) <= ERROR_MESSAGE_MAX
    assert "5 MB" in shown and "catalogue.pdf" in shown


def test_more_than_ten_files_are_refused() -> None:
    files = tuple(
        SlackFileRef(f"F{i:04d}", f"page{i}.pdf", "application/pdf", 1000) for i in range(12)
    )

    assert _errors(dataclasses.replace(SMS, files=files))[F.FILES].startswith(
        "At most 10 files go with one message; this one has 12: remove 2."
    )
    ten = check_draft(dataclasses.replace(SMS, files=files[:10]), now=NOW, region="US")
    assert not isinstance(ten, FieldErrors)


def test_files_without_text_are_a_message_on_a_channel_that_takes_files() -> None:
    checked = check_draft(
        dataclasses.replace(SMS, message="  ", files=(PDF,)), now=NOW, region="US"
    )

    assert not isinstance(checked, FieldErrors)
    assert checked.message == "" and checked.files == (PDF,)
    nothing = _errors(dataclasses.replace(SMS, message=""))
    assert nothing[F.MESSAGE] == "Write a message or attach a file."


def test_an_email_of_files_alone_still_needs_a_subject() -> None:
    draft = Draft(recipient="ada@example.com", channel=MessageChannel.EMAIL, files=(PDF,))

    errors = _errors(draft)

    assert list(errors) == [F.SUBJECT]
    with_subject = check_draft(dataclasses.replace(draft, subject="Invoice"), now=NOW, region="US")
    assert not isinstance(with_subject, FieldErrors)


def test_a_channel_without_files_refuses_them_and_still_wants_text() -> None:
    draft = dataclasses.replace(SMS, channel=MessageChannel.CUSTOM, message="", files=(PDF, PNG))

    errors = _errors(draft)

    assert errors[F.MESSAGE] == "Write a message."
    assert "Custom provider messages can't carry files" in errors[F.FILES]
    assert "invoice.pdf" in errors[F.FILES] and "photo2.png" in errors[F.FILES]
    one = _errors(dataclasses.replace(draft, message="hi", files=(PDF,)))
    assert one[F.FILES] == (
        "Custom provider messages can't carry files, so invoice.pdf can't go with this one."
    )


def test_every_error_comes_at_once() -> None:
    draft = Draft(recipient="555-01", channel=MessageChannel.SMS, message="", files=(EXE,))

    errors = _errors(draft)

    assert set(errors) == {F.RECIPIENT, F.FILES}  # the file makes the text optional


def test_an_absurd_file_name_is_shortened_in_the_error_keeping_the_limit() -> None:
    huge = dataclasses.replace(BIG_PDF, name="x" * 5000 + ".pdf")

    message = _errors(dataclasses.replace(SMS, files=(huge,)))[F.FILES]

    assert "5 MB" in message and len(message) < 200
    assert "….pdf" in message


def test_short_file_name_keeps_the_extension() -> None:
    assert short_file_name("a" * 100 + ".docx", 20) == "a" * 14 + "….docx"
    assert short_file_name("short.pdf", 20) == "short.pdf"
    assert short_file_name("n" * 50, 10) == "n" * 9 + "…"
    assert short_file_name("a." + "b" * 30, 10) == "a." + "b" * 7 + "…"
    assert files_problem((), MessageChannel.SMS) is None


def test_file_errors_go_on_the_message_files_when_there_is_no_file_input() -> None:
    errors = FieldErrors({F.FILES: "Custom provider messages can't carry files."})

    assert field_errors(errors, [F.MESSAGE, F.MESSAGE_FILES]) == {
        "message_files": "Custom provider messages can't carry files."
    }
    assert list(field_errors(errors, [F.MESSAGE, F.FILES, F.MESSAGE_FILES])) == ["files"]
    assert field_errors(errors, [F.MESSAGE]) == {
        "message": "Files: Custom provider messages can't carry files."
    }


# ---------------------------------------------------------------- private_metadata


def test_message_files_round_trip_through_private_metadata() -> None:
    text = encode_context(FROM_MESSAGE)

    assert decode_context(text) == FROM_MESSAGE
    assert json.loads(text)["f"] == [
        ["F0PDF", "invoice.pdf", "application/pdf", 120000],
        ["F0JPG", "photo1.jpg", "image/jpeg", 2097152],
    ]


def test_ten_files_with_absurd_names_fit_keeping_their_extensions() -> None:
    files = tuple(
        SlackFileRef(f"F{i:010d}", "é" * 4000 + f"-{i}.jpeg", "image/jpeg" + "x" * 500, 10**9)
        for i in range(10)
    )
    context = dataclasses.replace(FROM_MESSAGE, message_files=files)

    text = encode_context(context)
    back = decode_context(text)

    assert len(text) <= PRIVATE_METADATA_MAX
    assert [f.id for f in back.message_files] == [f.id for f in files]
    assert all(f.name.endswith(".jpeg") and len(f.name) <= 80 for f in back.message_files)
    assert back.message_files_left_out == 0
    view = _view(Draft(files=back.message_files), back)  # and the view is valid Slack
    assert len(_blocks(view)[F.MESSAGE_FILES]["element"]["options"]) == 10


def test_what_cannot_fit_is_left_out_with_a_note_instead_of_failing() -> None:
    long_id = "F" + "9" * 200  # a checkbox value holds 150 characters
    files = tuple(SlackFileRef(f"F{i}", f"scan{i}.pdf", "application/pdf", 1) for i in range(12))
    context = dataclasses.replace(FROM_MESSAGE, message_files=(*files, SlackFileRef(long_id, "x")))

    fitted = fit_context(context)

    assert [f.id for f in fitted.message_files] == [f"F{i}" for i in range(10)]
    assert fitted.message_files_left_out == 3
    view = _view(Draft(files=context.message_files), context)
    note = _blocks(view)[MESSAGE_FILES_NOTE_BLOCK]
    assert "3 more files" in note["elements"][0]["text"]
    assert decode_context(view["private_metadata"]) == fitted


def test_ids_that_crowd_private_metadata_cost_files_from_the_end() -> None:
    files = tuple(SlackFileRef(f"F{i}" + "7" * 148, f"f{i}.pdf") for i in range(10))
    # A long (never clipped) mailbox thread id leaves room for a few of them only.
    reply = dataclasses.replace(REPLY, email_thread_id="t" * 1500)
    context = dataclasses.replace(FROM_MESSAGE, reply=reply, message_files=files)

    fitted = fit_context(context)
    text = encode_context(context)

    assert len(text) <= PRIVATE_METADATA_MAX
    assert 0 < len(fitted.message_files) < 10
    assert fitted.message_files == files[: len(fitted.message_files)]
    assert fitted.message_files_left_out == 10 - len(fitted.message_files)
    assert decode_context(text) == fitted


@pytest.mark.parametrize(
    "files",
    [
        '"x"',
        '[[1, "a", "b", 1]]',
        '[["F1", "a", "b"]]',
        '[["F1", "a", "b", -1]]',
        '[["F1", "a", "b", true]]',
        '[["", "a", "b", 1]]',
    ],
)
def test_decode_refuses_file_entries_it_did_not_write(files: str) -> None:
    with pytest.raises(ValueError):
        decode_context(f'{{"c": "C0SALES", "f": {files}}}')
    with pytest.raises(ValueError):
        decode_context('{"c": "C0SALES", "fx": -2}')


# ---------------------------------------------------------------- the send's post

POST = SendPost(
    outbox_id=41,
    sender_user_id="U0ALICE",
    channel=MessageChannel.SMS,
    contact_label="Ada Lovelace",
    contact_address="+14155550100",
    text="Here you go",
    status=PostStatus.SENT,
    thread_id=7,
    files=(PDF, PHOTO, PNG),
)


def test_a_posts_files_show_their_names_and_images_as_thumbnails() -> None:
    text, blocks = root_message(POST)
    payload = assert_message_accepted(text, blocks)

    images = [b for b in payload if b["type"] == "image"]
    assert [i["slack_file"] for i in images] == [{"id": "F0JPG"}, {"id": "F0PNG"}]
    assert [i["alt_text"] for i in images] == ["photo1.jpg", "photo2.png"]
    assert "📎 invoice.pdf · photo1.jpg · photo2.png" in mrkdwn_texts(payload)
    assert "📎 3 files" in text


def test_at_most_three_thumbnails_the_rest_by_name() -> None:
    photos = tuple(
        SlackFileRef(f"F0IMG{i}", f"img{i}.png", "image/png", 1000)
        for i in range(MAX_FILES_PER_SEND)
    )
    text, blocks = reply_message(dataclasses.replace(POST, files=photos))
    payload = assert_message_accepted(text, blocks)

    assert len([b for b in payload if b["type"] == "image"]) == 3
    line = next(t for t in mrkdwn_texts(payload) if t.startswith("📎"))
    assert all(f"img{i}.png" in line for i in range(MAX_FILES_PER_SEND))


def test_without_thumbnails_only_the_names_show() -> None:
    text, blocks = reply_message(POST, thumbnails=False)
    payload = assert_message_accepted(text, blocks)

    assert not any(b["type"] == "image" for b in payload)
    assert any(t.startswith("📎 invoice.pdf") for t in mrkdwn_texts(payload))


def test_files_alone_show_no_empty_body_and_a_notification_names_the_file() -> None:
    text, blocks = root_message(dataclasses.replace(POST, text="", files=(PDF,)))
    payload = assert_message_accepted(text, blocks)

    assert not any("(no text)" in t for t in mrkdwn_texts(payload))
    assert "to Ada Lovelace: 📎 invoice.pdf (✓ Sent)" in text


def test_file_names_are_escaped_and_clipped() -> None:
    evil = SlackFileRef("F0EVIL", "<!channel> & <@U0EVE> " + "z" * 300 + ".png", "image/png", 1)
    text, blocks = root_message(dataclasses.replace(POST, files=(evil,)))
    payload = assert_message_accepted(text, blocks)

    for shown in [*mrkdwn_texts(payload), text]:
        assert foreign_markup(shown) == []
        assert broken_entities(shown) == []
    line = next(t for t in mrkdwn_texts(payload) if t.startswith("📎"))
    assert len(line) < 100


def test_many_long_names_stay_within_one_line_of_slack() -> None:
    files = tuple(
        SlackFileRef(f"F{i}", "&" * 200 + f"{i}.pdf", "application/pdf", 1) for i in range(60)
    )
    text, blocks = root_message(dataclasses.replace(POST, files=files))
    payload = assert_message_accepted(text, blocks)

    line = next(t for t in mrkdwn_texts(payload) if t.startswith("📎"))
    assert len(line) <= 2000 and line.endswith("more")
    assert broken_entities(line) == []


# ---------------------------------------------------------------- the simulator's image checks


@pytest.mark.parametrize(
    ("block", "ok"),
    [
        ({"type": "image", "alt_text": "a", "slack_file": {"id": "F1"}}, True),
        ({"type": "image", "alt_text": "a", "slack_file": {"url": "https://x/y.png"}}, True),
        ({"type": "image", "alt_text": "a", "image_url": "https://x/y.png"}, True),
        ({"type": "image", "alt_text": "a"}, False),
        (
            {
                "type": "image",
                "alt_text": "a",
                "image_url": "https://x/y.png",
                "slack_file": {"id": "F1"},
            },
            False,
        ),
        ({"type": "image", "alt_text": "a", "slack_file": {"id": "F1", "url": "u"}}, False),
        ({"type": "image", "alt_text": "a", "slack_file": {}}, False),
        ({"type": "image", "alt_text": "a", "slack_file": "F1"}, False),
    ],
)
def test_the_simulator_takes_slack_file_images_as_slack_does(
    block: dict[str, Any], ok: bool
) -> None:
    problems = block_problems([block], pointer="/blocks", max_blocks=MESSAGE_BLOCKS_MAX)

    assert (problems == []) is ok, problems
