"""``POST /contacts/search``'s query, filters and sort, applied to contacts' answer shapes."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

__all__ = ["SEARCH_FIELDS", "filter_errors", "group_holds", "query_matches", "sort_key"]

# Fields a /contacts/search filter or sort may name: the contact's answer keys.
SEARCH_FIELDS = (
    "id",
    "firstName",
    "lastName",
    "name",
    "firstNameLowerCase",
    "lastNameLowerCase",
    "fullNameLowerCase",
    "email",
    "phone",
    "companyName",
    "tags",
    "dnd",
    "type",
    "dateAdded",
    "dateUpdated",
)


def filter_errors(filters: list[dict[str, Any]], where: str) -> list[str]:
    errors: list[str] = []
    for index, rule in enumerate(filters):
        here = f"{where}.{index}"
        if "group" in rule or "filters" in rule:
            if "group" not in rule or "filters" not in rule or {"field", "operator"} & set(rule):
                errors.append(f"{here} must have group and filters, and nothing else")
            else:
                errors.extend(filter_errors(rule["filters"], f"{here}.filters"))
            continue
        if "field" not in rule or "operator" not in rule:
            errors.append(f"{here} must have field and operator (or group and filters)")
            continue
        if rule["field"] not in SEARCH_FIELDS:
            values = ", ".join(SEARCH_FIELDS)
            errors.append(f"{here}.field must be one of the following values: {values}")
        if rule["operator"] == "range":
            errors.append(f"{here}.operator range is not supported by the sandbox")
        elif rule["operator"] not in {"exists", "not_exists"} and "value" not in rule:
            errors.append(f"{here}.value should not be empty")
    return errors


def group_holds(entry: dict[str, Any], group: str, filters: list[dict[str, Any]]) -> bool:
    results = (
        group_holds(entry, rule["group"], rule["filters"])
        if "group" in rule
        else filter_holds(entry, rule)
        for rule in filters
    )
    return any(results) if group == "OR" else all(results)


def filter_holds(entry: dict[str, Any], rule: dict[str, Any]) -> bool:
    field: str = rule["field"]
    operator: str = rule["operator"]
    wanted: object = rule.get("value")
    actual: object = entry.get(field)
    present = actual not in (None, "", [])
    if operator in {"exists", "not_exists"}:
        return present == (operator == "exists")
    values = actual if isinstance(actual, list) else [actual]  # tags match any one
    if operator in {"eq", "not_eq"}:
        equal = any(_same(field, value, wanted) for value in values)
        return equal == (operator == "eq")
    needle = str(wanted).lower()
    contained = any(value is not None and needle in str(value).lower() for value in values)
    return contained == (operator == "contains")


def _same(field: str, actual: object, wanted: object) -> bool:
    if isinstance(actual, str) and isinstance(wanted, str):
        if field == "phone":
            return _digits(actual) == _digits(wanted)
        return actual.lower() == wanted.lower()
    return actual == wanted


def _digits(text: str) -> str:
    return "".join(ch for ch in text if ch.isdigit())


def query_matches(texts: Iterable[str | None], phone: str | None, text: str) -> bool:
    """HighLevel's free-text query, ``text`` lowercased: a substring of one of ``texts`` (first,
    last and full name, email, company), any case, or of ``phone``'s digits however formatted."""
    if any(value and text in value.lower() for value in texts):
        return True
    if not phone:
        return False
    if text in phone.lower():
        return True
    digits = _digits(text)
    phone_like = len(digits) >= 3 and all(ch.isdigit() or ch in "+ -()." for ch in text)
    return phone_like and digits in _digits(phone)


def sort_key(field: str, entry: dict[str, Any]) -> str:
    value = entry.get(field)
    if isinstance(value, list):
        return ",".join(str(item) for item in value).lower()
    return "" if value is None else str(value).lower()
