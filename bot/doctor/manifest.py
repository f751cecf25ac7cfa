"""The reader of manifest.yml's bot scopes (`oauth_config.scopes.bot`), without YAML."""

from __future__ import annotations

import re


class ManifestError(ValueError):
    """manifest.yml has no bot scope list this reader understands."""


_KEY_LINE = re.compile(r"(?P<key>[A-Za-z0-9_.\-]+):(?:\s+(?P<value>.*))?$")
_SCOPE = re.compile(r"[a-z][a-z0-9_.:\-]*")
_SCOPES_PATH = ("oauth_config", "scopes", "bot")


def read_bot_scopes(text: str) -> tuple[str, ...]:
    """The `oauth_config.scopes.bot` list of a Slack app manifest.

    A small, strict reader of that one list instead of a YAML dependency: it follows the
    nesting of block mappings by indentation, accepts the list as `- scope` lines or as a
    flow list `[a, b]`, and raises ManifestError for anything else where the list should be.
    """
    path: list[tuple[int, str]] = []
    scopes: list[str] | None = None
    list_indent: int | None = None  # indent of `bot:` while its items are being read
    for number, raw in enumerate(text.splitlines(), start=1):
        line = _without_comment(raw).rstrip()
        content = line.lstrip(" ")
        if not content or content in {"---", "..."}:
            continue
        indent = len(line) - len(content)
        if content.startswith("\t"):
            raise ManifestError(f"line {number}: tab in indentation")
        if list_indent is not None and scopes is not None:
            if indent >= list_indent and (content == "-" or content.startswith("- ")):
                scopes.append(_scope(content[1:], number))
                continue
            if indent > list_indent:
                raise ManifestError(f"line {number}: expected '- scope' in the bot scope list")
            list_indent = None
        if content.startswith("- "):
            # A mapping inside a list item: its keys sit two columns in.
            content, indent = content[2:].lstrip(" "), indent + 2
        match = _KEY_LINE.match(content)
        if match is None:
            continue  # text of a multi-line value, or a scalar list item elsewhere
        while path and path[-1][0] >= indent:
            path.pop()
        key, value = match["key"], (match["value"] or "").strip()
        if (*(k for _, k in path), key) != _SCOPES_PATH:
            if not value:
                path.append((indent, key))
            continue
        if scopes is not None:
            raise ManifestError(f"line {number}: a second oauth_config.scopes.bot")
        if value:
            scopes = _flow_list(value, number)
        else:
            scopes, list_indent = [], indent
            path.append((indent, key))
    if not scopes:
        raise ManifestError("no oauth_config.scopes.bot list (or an empty one)")
    return tuple(scopes)


def _without_comment(line: str) -> str:
    # YAML comments start with '#' at the start or after a space; '#' inside a word or a
    # quoted "#1f2937" is not one.
    for index, char in enumerate(line):
        if char == "#" and (index == 0 or line[index - 1] in " \t"):
            return line[:index]
    return line


def _scope(raw: str, number: int) -> str:
    value = raw.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        value = value[1:-1]
    if not _SCOPE.fullmatch(value):
        raise ManifestError(f"line {number}: {raw.strip()!r} is not a Slack scope")
    return value


def _flow_list(value: str, number: int) -> list[str]:
    if not (value.startswith("[") and value.endswith("]")):
        raise ManifestError(f"line {number}: the bot scopes must be a list")
    inner = value[1:-1].strip()
    return [_scope(part, number) for part in inner.split(",")] if inner else []
