"""Merge fields: found, refused when unknown, filled from the contact, escaped in HTML."""

from __future__ import annotations

import pytest

from bot.compose.merge_fields import (
    empty_merge_fields,
    fill_merge_fields,
    merge_fields_in,
    merge_values,
    unknown_merge_fields,
)
from bot.highlevel import Contact

ADA = Contact(
    id="c1",
    first_name="Ada",
    last_name="Lovelace",
    email="ada@example.com",
    phone="+15550100",
    company_name="Engines & Co",
    timezone="Europe/London",
)


def test_fields_are_found_once_in_order_whatever_their_spacing_and_case() -> None:
    text = "Hi {{ Contact.First_Name }}, {{contact.first_name}} of {{contact.company_name}}"
    assert merge_fields_in(text) == ["contact.first_name", "contact.company_name"]


def test_text_without_fields_has_none() -> None:
    assert merge_fields_in("Running {late} today") == []


@pytest.mark.parametrize(
    ("text", "unknown"),
    [
        ("Hi {{contact.nickname}}", ["contact.nickname"]),
        ("Hi {{ custom_values.promo }} and {{contact.name}}", ["custom_values.promo"]),
        ("Hi {{}}", [""]),
        ("Hi {{contact.first_name}", ["{{"]),
        ("Hi contact.first_name}}", ["{{"]),
    ],
)
def test_unknown_and_broken_fields_are_reported(text: str, unknown: list[str]) -> None:
    assert unknown_merge_fields(text) == unknown


def test_known_fields_are_not_reported() -> None:
    text = "{{contact.first_name}} {{contact.last_name}} {{location.name}} {{user.first_name}}"
    assert unknown_merge_fields(text) == []


def test_values_come_from_the_contact_the_sub_account_and_the_sender() -> None:
    values = merge_values(ADA, location_name="Acme Dental", user={"user.first_name": "Grace"})
    filled = fill_merge_fields(
        "Hi {{contact.first_name}} {{contact.last_name}} ({{contact.email}}), "
        "{{user.first_name}} at {{location.name}} here",
        values,
    )
    assert filled == "Hi Ada Lovelace (ada@example.com), Grace at Acme Dental here"


def test_a_contact_with_only_a_full_name_still_has_a_first_name() -> None:
    values = merge_values(Contact(id="c2", name="Grace Hopper"))
    assert values["contact.first_name"] == "Grace"
    assert values["contact.name"] == "Grace Hopper"


def test_fields_without_a_value_are_empty_and_reported() -> None:
    values = merge_values(Contact(id="c3", first_name="Alan"))
    text = "Hi {{contact.first_name}} from {{contact.company_name}}"
    assert fill_merge_fields(text, values) == "Hi Alan from "
    assert empty_merge_fields(text, values) == ["contact.company_name"]


def test_html_values_are_escaped_and_text_values_are_not() -> None:
    values = merge_values(ADA)
    assert fill_merge_fields("<b>{{contact.company_name}}</b>", values, html=True) == (
        "<b>Engines &amp; Co</b>"
    )
    assert fill_merge_fields("{{contact.company_name}}", values) == "Engines & Co"
