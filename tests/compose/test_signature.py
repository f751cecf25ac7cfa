"""The signature: checked when set, filled from the Slack profile, added to text and HTML."""

from __future__ import annotations

import pytest

from bot.compose.signature import Signature, SignerProfile, with_html_signature, with_signature


def test_unknown_placeholders_are_refused_with_the_ones_allowed() -> None:
    with pytest.raises(ValueError, match=r"unknown signature field \{nickname\}.*\{first_name\}"):
        Signature.parse("— {nickname}")
    with pytest.raises(ValueError, match="not a template"):
        Signature.parse("— {first_name")


def test_it_is_filled_from_the_profile() -> None:
    signature = Signature.parse("— {first_name}, {team}")
    assert signature.needs_team
    profile = SignerProfile(first_name="Grace", real_name="Grace Hopper", team="Acme Dental")
    assert signature.render(profile) == "— Grace, Acme Dental"


def test_a_missing_first_name_comes_from_the_real_name_and_empty_parts_leave_no_comma() -> None:
    signature = Signature.parse("— {first_name}, {team}")
    assert signature.render(SignerProfile(real_name="Grace Hopper")) == "— Grace"
    assert not Signature.parse("— {first_name}").needs_team


def test_an_empty_profile_signs_nothing() -> None:
    assert Signature.parse("— {first_name}").render(SignerProfile()) == ""


def test_it_goes_below_the_text_and_inside_the_html_body() -> None:
    assert with_signature("See you at 3", "— Grace") == "See you at 3\n— Grace"
    assert with_signature("See you", "") == "See you"
    html = "<html><body><p>Hi</p></body></html>"
    assert with_html_signature(html, "— Grace & co") == (
        "<html><body><p>Hi</p><p>— Grace &amp; co</p></body></html>"
    )
    assert with_html_signature("<p>Hi</p>", "— G") == "<p>Hi</p><p>— G</p>"
