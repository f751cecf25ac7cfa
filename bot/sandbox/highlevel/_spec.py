"""Load HighLevel's official OpenAPI files; validate requests against them (JSON Schema Draft 7)."""

from __future__ import annotations

import copy
import functools
import json
from collections.abc import Iterable, Mapping
from importlib import resources
from typing import Any

# jsonschema ships no type information; types-jsonschema may or may not be installed.
from jsonschema import Draft7Validator  # type: ignore[import-untyped, unused-ignore]
from referencing import Registry
from referencing.jsonschema import DRAFT7

__all__ = [
    "CONTACTS",
    "CONVERSATIONS",
    "LOCATIONS",
    "SEARCH_OPERATORS",
    "SPEC_FILES",
    "USERS",
    "coerce_query",
    "enum_of",
    "query_enum",
    "query_errors",
    "request_errors",
]

CONVERSATIONS = "apps/conversations.json"
CONTACTS = "apps/contacts.json"
LOCATIONS = "apps/locations.json"
USERS = "apps/users.json"
COMMON = "common/common-schemas.json"
SPEC_FILES = (CONVERSATIONS, CONTACTS, LOCATIONS, USERS, COMMON)

# Any absolute base works; it only has to make "../common/common-schemas.json#..." resolvable.
_BASE_URI = "https://spec.sandbox.invalid/"


def _read(relative: str) -> dict[str, Any]:
    path = resources.files("bot.sandbox").joinpath("spec", *relative.split("/"))
    document: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return document


def _to_draft7(node: Any) -> Any:
    """OpenAPI 3.0 schema objects -> Draft 7: ``nullable`` becomes a null type, ``any`` goes."""
    if isinstance(node, list):
        return [_to_draft7(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _to_draft7(value) for key, value in node.items()}
    if out.get("type") == "any":  # not a JSON Schema type; the spec means "anything"
        del out["type"]
    if out.get("nullable") is True:
        del out["nullable"]
        if isinstance(out.get("type"), str):
            out["type"] = [out["type"], "null"]
    return out


def _forbid_unknown_properties(node: Any) -> None:
    """Mimic NestJS ``forbidNonWhitelisted``: objects with declared properties reject others."""
    if isinstance(node, list):
        for item in node:
            _forbid_unknown_properties(item)
        return
    if not isinstance(node, dict):
        return
    properties = node.get("properties")
    if isinstance(properties, dict) and properties and "additionalProperties" not in node:
        node["additionalProperties"] = False
    for value in node.values():
        _forbid_unknown_properties(value)


def _patch_known_spec_errors(documents: dict[str, dict[str, Any]]) -> None:
    schemas = documents[CONVERSATIONS]["components"]["schemas"]
    send = schemas["SendMessageBodyDto"]
    # Since 2026-05-01 the spec marks subType and status as required. That is a known error:
    # earlier specs required only type and contactId, and working public clients send neither.
    send["required"] = [name for name in send["required"] if name not in {"subType", "status"}]
    # SendMessageResponseDto.messageIds documents GMB sends, but the request enum omits GMB.
    if "GMB" not in send["properties"]["type"]["enum"]:
        send["properties"]["type"]["enum"].append("GMB")
    upload = schemas["UploadFilesDto"]
    # Public clients upload files under fileAttachment with only conversationId and locationId.
    upload["required"] = ["conversationId", "locationId"]
    contacts = documents[CONTACTS]["components"]["schemas"]
    # POST /contacts/search: SearchBodyV2DTO is an empty object whose description links to an
    # external document; these are the fields that document (and HLD#289's requests) use.
    contacts["SearchBodyV2DTO"] = copy.deepcopy(SEARCH_BODY)  # strict mode edits its copy
    contacts[SEARCH_FILTER] = copy.deepcopy(_SEARCH_FILTER_SCHEMA)


SEARCH_FILTER = "SandboxSearchFilterDto"
SEARCH_OPERATORS = ("eq", "not_eq", "contains", "not_contains", "exists", "not_exists", "range")
SEARCH_BODY: dict[str, Any] = {
    "type": "object",
    "properties": {
        "locationId": {"type": "string"},
        "page": {"type": "number", "minimum": 1},
        "pageLimit": {"type": "number", "minimum": 1, "maximum": 500},
        "searchAfter": {"type": "array"},
        "filters": {"type": "array", "items": {"$ref": f"#/components/schemas/{SEARCH_FILTER}"}},
        "sort": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "field": {"type": "string"},
                    "direction": {"type": "string", "enum": ["asc", "desc"]},
                },
                "required": ["field", "direction"],
            },
        },
        "query": {"type": "string", "maxLength": 75},
    },
    "required": ["locationId", "pageLimit"],
}
# One filter ({field, operator, value}) or a group of them ({group: AND|OR, filters}).
_SEARCH_FILTER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "field": {"type": "string"},
        "operator": {"type": "string", "enum": list(SEARCH_OPERATORS)},
        "value": {},
        "group": {"type": "string", "enum": ["AND", "OR"]},
        "filters": {"type": "array", "items": {"$ref": f"#/components/schemas/{SEARCH_FILTER}"}},
    },
}


@functools.cache
def _documents(strict: bool) -> dict[str, dict[str, Any]]:
    documents = {name: _to_draft7(_read(name)) for name in SPEC_FILES}
    _patch_known_spec_errors(documents)
    if strict:
        for document in documents.values():
            _forbid_unknown_properties(document.get("components", {}))
    return documents


@functools.cache
def _registry(strict: bool) -> Registry[Any]:
    resources_ = [
        (_BASE_URI + name, DRAFT7.create_resource(document))
        for name, document in _documents(strict).items()
    ]
    return Registry().with_resources(resources_)


@functools.cache
def _schema_validator(document: str, schema_name: str, strict: bool) -> Any:
    ref = f"{_BASE_URI}{document}#/components/schemas/{schema_name}"
    return Draft7Validator({"$ref": ref}, registry=_registry(strict))


def enum_of(document: str, schema_name: str, property_name: str) -> list[str]:
    schema = _documents(False)[document]["components"]["schemas"][schema_name]
    values: list[str] = schema["properties"][property_name]["enum"]
    return list(values)


def request_errors(
    document: str, schema_name: str, body: object, *, strict: bool = True
) -> list[str]:
    """Validation messages for a request body, worded like HighLevel's class-validator ones."""
    validator = _schema_validator(document, schema_name, strict)
    return _messages(validator.iter_errors(body))


@functools.cache
def _query_validator(document: str, method: str, path: str, strict: bool) -> Any:
    op = _documents(strict)[document]["paths"][path][method.lower()]
    properties: dict[str, Any] = {}
    required: list[str] = []
    for parameter in op.get("parameters", []):
        if parameter.get("in") != "query":
            continue
        properties[parameter["name"]] = parameter.get("schema", {})
        if parameter.get("required"):
            required.append(parameter["name"])
    schema: dict[str, Any] = {"type": "object", "properties": properties, "required": required}
    if strict:
        schema["additionalProperties"] = False
    return Draft7Validator(schema)


def query_schema_types(document: str, method: str, path: str) -> dict[str, str]:
    """Declared JSON types of an operation's query parameters (to coerce query strings)."""
    op = _documents(False)[document]["paths"][path][method.lower()]
    types: dict[str, str] = {}
    for parameter in op.get("parameters", []):
        declared = parameter.get("schema", {}).get("type")
        if parameter.get("in") == "query" and isinstance(declared, str):
            types[parameter["name"]] = declared
    return types


def query_enum(document: str, method: str, path: str, name: str) -> frozenset[str]:
    op = _documents(False)[document]["paths"][path][method.lower()]
    for parameter in op.get("parameters", []):
        if parameter.get("in") == "query" and parameter["name"] == name:
            return frozenset(parameter.get("schema", {}).get("enum", []))
    raise KeyError(f"{method} {path} has no query parameter {name!r}")


def query_errors(
    document: str, method: str, path: str, query: Mapping[str, object], *, strict: bool = True
) -> list[str]:
    validator = _query_validator(document, method, path, strict)
    return _messages(validator.iter_errors(dict(query)))


def coerce_query(document: str, method: str, path: str, query: Mapping[str, str]) -> dict[str, Any]:
    """Turn query strings into the declared number/boolean types where they parse."""
    types = query_schema_types(document, method, path)
    out: dict[str, Any] = {}
    for name, raw in query.items():
        declared = types.get(name)
        value: Any = raw
        if declared in {"number", "integer"}:
            try:
                number = float(raw)
            except ValueError:
                pass
            else:
                value = int(number) if number.is_integer() else number
        elif declared == "boolean" and raw in {"true", "false"}:
            value = raw == "true"
        out[name] = value
    return out


_TYPE_WORDS = {
    "string": "a string",
    "number": "a number conforming to the specified constraints",
    "integer": "an integer number",
    "boolean": "a boolean value",
    "array": "an array",
    "object": "an object",
}


def _messages(errors: Iterable[Any]) -> list[str]:
    messages: list[str] = []
    for error in sorted(errors, key=lambda e: [str(part) for part in e.absolute_path]):
        messages.extend(_wording(error))
    # Keep order, drop repeats (anyOf branches can say the same thing twice).
    return list(dict.fromkeys(messages))


def _wording(error: Any) -> list[str]:
    path = [str(part) for part in error.absolute_path]
    field = ".".join(path)
    prefix = f"{field}." if field else ""
    if error.validator == "required":
        return [
            f"{prefix}{name} should not be empty"
            for name in error.validator_value
            if isinstance(error.instance, dict) and name not in error.instance
        ]
    if error.validator == "additionalProperties":
        declared = error.schema.get("properties", {})
        unknown = [name for name in error.instance if name not in declared]
        return [f"property {prefix}{name} should not exist" for name in unknown]
    if path and path[-1].isdigit():
        owner = ".".join(path[:-1])
        subject = f"each value in {owner}"
    else:
        subject = field or "body"
    if error.validator == "type":
        expected = error.validator_value
        names = expected if isinstance(expected, list) else [expected]
        words = " or ".join(
            _TYPE_WORDS.get(str(name), str(name)) for name in names if name != "null"
        )
        return [f"{subject} must be {words}"]
    if error.validator == "enum":
        values = ", ".join(str(value) for value in error.validator_value)
        return [f"{subject} must be one of the following values: {values}"]
    # class-validator's words for @Min, @Max and @MaxLength.
    if error.validator == "minimum":
        return [f"{subject} must not be less than {error.validator_value}"]
    if error.validator == "maximum":
        return [f"{subject} must not be greater than {error.validator_value}"]
    if error.validator == "maxLength":
        return [f"{subject} must be shorter than or equal to {error.validator_value} characters"]
    return [f"{subject}: {error.message}"]
