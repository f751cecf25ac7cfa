"""The thread line for a customer's file that was not copied into Slack (a pure builder): the
name, the reason in plain words, and a link only a plain http(s) URL gets."""

from __future__ import annotations

import pytest

from bot.ui.file_notice_builder import (
    FileIssue,
    FileNotCopied,
    file_not_copied,
    late_media_caption,
)

URL = "https://storage.example.com/media/photo.jpg"
MB = 1024 * 1024


def line(notice: FileNotCopied) -> str:
    text, blocks = file_not_copied(notice)
    [block] = blocks
    assert block.to_dict()["text"]["text"] == text
    return text


def test_too_big_names_the_size_and_the_limit() -> None:
    notice = FileNotCopied("photo.jpg", URL, FileIssue.TOO_BIG, size=34 * MB, limit=20 * MB)
    assert line(notice) == (
        f"📎 *photo.jpg* (34 MB) is over the 20 MB limit for files copied into Slack: "
        f"<{URL}|open it in HighLevel>"
    )
    unknown_size = FileNotCopied("clip.mp4", URL, FileIssue.TOO_BIG, limit=20 * MB)
    assert "*clip.mp4* is over the 20 MB limit" in line(unknown_size)


@pytest.mark.parametrize(
    ("issue", "extra", "words"),
    [
        (FileIssue.HTTP_ERROR, {"status": 404}, "its download failed (the server answered 404)"),
        (FileIssue.HTTP_ERROR, {}, "its download was redirected too many times"),
        (FileIssue.TIMED_OUT, {}, "its download took too long"),
        (FileIssue.UNREACHABLE, {}, "its server couldn't be reached"),
        (FileIssue.PRIVATE_ADDRESS, {}, "its link points into a private network"),
        (FileIssue.SLACK_REFUSED, {"slack_error": "is_archived"}, "the channel is archived"),
        (FileIssue.SLACK_REFUSED, {"slack_error": "weird_thing"}, "Slack refused it (weird_thing)"),
        (FileIssue.SLACK_UNCONFIRMED, {}, "Slack did not confirm that *photo.jpg* was copied"),
    ],
)
def test_each_reason_in_plain_words_with_the_link(
    issue: FileIssue, extra: dict[str, object], words: str
) -> None:
    text = line(FileNotCopied("photo.jpg", URL, issue, **extra))  # type: ignore[arg-type]
    assert words in text
    assert text.endswith(f"<{URL}|open it in HighLevel>")


def test_what_came_from_outside_cannot_mention_or_link() -> None:
    notice = FileNotCopied(
        "<!channel> <https://evil.example|bank>.pdf",
        "https://evil.example/a|b>c",
        FileIssue.HTTP_ERROR,
        status=500,
    )
    text = line(notice)
    assert "<!channel>" not in text and "<https://evil" not in text
    assert "&lt;!channel&gt;" in text
    assert "`https://evil.example/a|b&gt;c`" in text  # shown as text, not linked


def test_a_non_web_link_is_shown_not_linked() -> None:
    text = line(FileNotCopied("attachment", "javascript:alert(1)", FileIssue.NOT_WEB_LINK))
    assert text == (
        "📎 *attachment* wasn't copied into Slack: its address is not a web link "
        "(`javascript:alert(1)`)"
    )


def test_the_caption_of_late_media_is_escaped() -> None:
    assert late_media_caption("  ") is None
    assert late_media_caption("Look <@U123> & see\r\n") == "Look &lt;@U123&gt; &amp; see"
