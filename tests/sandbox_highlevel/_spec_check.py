"""Validate against the official OpenAPI files, independently of the simulator's own loader.

The simulator converts and patches the spec itself; re-using that code here would let a bug in
it hide a drift. This file reads the same copied files and converts them on its own.
"""

from __future__ import annotations

import copy
import functools
import json
from pathlib import Path
from typing import Any

from jsonschema import Draft7Validator  # type: ignore[import-untyped, unused-ignore]
from referencing import Registry
from referencing.jsonschema import DRAFT7

SPEC_DIR = Path(__file__).resolve().parents[2] / "bot" / "sandbox" / "spec"
CONVERSATIONS = "apps/conversations.json"
CONTACTS = "apps/contacts.json"
LOCATIONS = "apps/locations.json"
_BASE = "https://tests.invalid/"
# The spec's known error: SendMessageBodyDto lists subType and status as required.
_KNOWN_FALSE_REQUIRED = {"subType", "status"}


def _openapi_to_json_schema(node: Any) -> Any:
    if isinstance(node, list):
        return [_openapi_to_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    converted = {key: _openapi_to_json_schema(value) for key, value in node.items()}
    if converted.get("type") == "any":
        converted.pop("type")
    if converted.get("nullable") is True:
        converted.pop("nullable")
        if isinstance(converted.get("type"), str):
            converted["type"] = [converted["type"], "null"]
    return converted


def _close_objects(node: Any) -> None:
    if isinstance(node, list):
        for item in node:
            _close_objects(item)
    elif isinstance(node, dict):
        if isinstance(node.get("properties"), dict) and "additionalProperties" not in node:
            node["additionalProperties"] = False
        for value in node.values():
            _close_objects(value)


@functools.cache
def _registry(closed: bool) -> Registry[Any]:
    resources = []
    for name in (CONVERSATIONS, CONTACTS, LOCATIONS, "common/common-schemas.json"):
        document = _openapi_to_json_schema(json.loads((SPEC_DIR / name).read_text("utf-8")))
        if closed:
            _close_objects(document)
        resources.append((_BASE + name, DRAFT7.create_resource(document)))
    return Registry().with_resources(resources)


def _pointer(*parts: str) -> str:
    return "/".join(part.replace("~", "~0").replace("/", "~1") for part in parts)


def _errors(ref: str, instance: Any, *, closed: bool) -> list[str]:
    validator = Draft7Validator({"$ref": ref}, registry=_registry(closed))
    return [
        f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
        for e in validator.iter_errors(instance)
    ]


def _strip(node: Any, extras: frozenset[str]) -> Any:
    if isinstance(node, list):
        return [_strip(item, extras) for item in node]
    if isinstance(node, dict):
        return {k: _strip(v, extras) for k, v in node.items() if k not in extras}
    return node


def response_errors(
    document: str,
    method: str,
    path: str,
    status: int,
    body: Any,
    *,
    extras: frozenset[str] = frozenset(),
) -> list[str]:
    """Errors of ``body`` against the response schema the spec declares for that operation.

    Two passes: the schema as published, then the schema closed to undeclared keys, with only
    the named real-world ``extras`` removed first — so a misspelt or invented field fails.
    """
    ref = (
        _BASE
        + document
        + "#/"
        + _pointer(
            "paths",
            path,
            method.lower(),
            "responses",
            str(status),
            "content",
            "application/json",
            "schema",
        )
    )
    return _errors(ref, body, closed=False) + _errors(
        ref, _strip(copy.deepcopy(body), extras), closed=True
    )


def schema_errors(
    document: str, schema_name: str, body: Any, *, extras: frozenset[str] = frozenset()
) -> list[str]:
    """Errors against a named component schema (for responses the spec leaves untyped)."""
    ref = _BASE + document + "#/" + _pointer("components", "schemas", schema_name)
    return _errors(ref, body, closed=False) + _errors(
        ref, _strip(copy.deepcopy(body), extras), closed=True
    )


def request_errors(document: str, schema_name: str, body: Any) -> list[str]:
    """Errors of a sample request body, ignoring only the spec's known false ``required``."""
    ref = _BASE + document + "#/" + _pointer("components", "schemas", schema_name)
    validator = Draft7Validator({"$ref": ref}, registry=_registry(True))
    return [
        e.message
        for e in validator.iter_errors(body)
        if not (
            e.validator == "required"
            and any(
                f"'{name}' is a required property" == e.message for name in _KNOWN_FALSE_REQUIRED
            )
        )
    ]


def declared_response_statuses(document: str, method: str, path: str) -> set[int]:
    spec = json.loads((SPEC_DIR / document).read_text("utf-8"))
    return {int(code) for code in spec["paths"][path][method.lower()]["responses"]}
