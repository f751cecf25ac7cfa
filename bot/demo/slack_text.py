"""Slack messages as the text a person reads: mrkdwn, Block Kit blocks and reactions."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from bot.sandbox.slack import SlackMessage
from bot.sandbox.stack import (
    AGENT_USER,
    INBOX_CHANNEL,
    NO_BOT_CHANNEL,
    OTHER_USER,
    SALES_CHANNEL,
    SandboxStack,
)

# `<...>` markup: mentions, channels, dates, special mentions and links.
_ANGLE: Final = re.compile(r"<([^<>\n]*)>")
_ENTITY: Final = re.compile(r"&(lt|gt|amp);")
_ENTITIES: Final = {"lt": "<", "gt": ">", "amp": "&"}
# *bold* / _italic_ / ~strike~ as Slack reads them: not inside words, not around spaces.
_EMPHASIS: Final = re.compile(r"(?<![\w*_~])([*_~])(?=\S)([^\n]*?\S)\1(?![\w*_~])")


@dataclass(frozen=True)
class SlackNames:
    """Who `<@U…>` and `<#C…>` are, for turning mrkdwn into text."""

    users: Mapping[str, str] = field(default_factory=dict)
    channels: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, stack: SandboxStack) -> SlackNames:
        slack = stack.slack
        users = {
            user_id: user.real_name
            for user_id in (AGENT_USER, OTHER_USER, slack.bot_user_id)
            if (user := slack.user(user_id)) is not None
        }
        channels = {
            channel_id: channel.name
            for channel_id in (SALES_CHANNEL, INBOX_CHANNEL, NO_BOT_CHANNEL)
            if (channel := slack.channel(channel_id)) is not None
        }
        return cls(users, channels)


def readable(mrkdwn: str, names: SlackNames | None = None, *, emphasis: bool = False) -> str:
    """Slack mrkdwn as a person reads it: `<@U1>` → "@Name", `<!date^…|fallback>` → fallback,
    `<url|label>` → "label (url)", `&lt;` → "<"; `*bold*` marks dropped unless `emphasis`."""
    names = names or SlackNames()

    def markup(match: re.Match[str]) -> str:
        target, _, label = match.group(1).partition("|")
        if target.startswith("@"):
            return "@" + (label or names.users.get(target[1:], target[1:]))
        if target.startswith("#"):
            return "#" + (label or names.channels.get(target[1:], target[1:]))
        if target.startswith("!date^"):
            return label or target
        if target.startswith("!"):
            return "@" + (label or target[1:].split("^")[0])
        return f"{label} ({target})" if label and label != target else target

    text = _ANGLE.sub(markup, mrkdwn)
    if not emphasis:
        text = _EMPHASIS.sub(r"\2", text)
    return _ENTITY.sub(lambda m: _ENTITIES[m.group(1)], text)


def _object_text(value: Any, names: SlackNames, emphasis: bool = False) -> str:
    """A text object (plain_text or mrkdwn) as text."""
    if isinstance(value, str):
        return readable(value, names, emphasis=emphasis)
    if not isinstance(value, Mapping):
        return ""
    text = str(value.get("text", ""))
    return readable(text, names, emphasis=emphasis) if value.get("type") == "mrkdwn" else text


def _element_text(element: Any, names: SlackNames, emphasis: bool = False) -> str:
    if not isinstance(element, Mapping):
        return ""
    kind = element.get("type")
    if kind == "button":
        return f"[{_object_text(element.get('text'), names)}]"
    if kind == "image":
        return f"[image: {element.get('alt_text', '')}]"
    if kind in ("static_select", "overflow", "users_select", "conversations_select"):
        placeholder = _object_text(element.get("placeholder"), names) or "choose"
        return f"[{placeholder} ▾]"
    if kind in ("mrkdwn", "plain_text"):
        return _object_text(element, names, emphasis)
    return f"[{kind}]"


def _rich_text(element: Any) -> str:
    if not isinstance(element, Mapping):
        return ""
    if "text" in element and isinstance(element["text"], str):
        return element["text"]
    return "".join(_rich_text(child) for child in element.get("elements") or [])


def render_blocks(
    blocks: Sequence[Mapping[str, Any]], names: SlackNames | None = None, *, emphasis: bool = False
) -> list[str]:
    """Block Kit blocks as the lines of text a person reads; buttons as `[Label]`.

    With `emphasis`, mrkdwn's `*bold*`/`_italic_` marks are kept (for a terminal to style)."""
    names = names or SlackNames()
    lines: list[str] = []
    for block in blocks:
        kind = block.get("type")
        if kind in ("section", "header"):
            if block.get("text"):
                lines += _object_text(block["text"], names, emphasis).splitlines() or [""]
            lines += [_object_text(f, names, emphasis) for f in block.get("fields") or []]
            accessory = block.get("accessory")
            if accessory:
                lines.append(_element_text(accessory, names))
        elif kind == "context":
            parts = [_element_text(e, names, emphasis) for e in block.get("elements") or []]
            lines.append("  ".join(p for p in parts if p))
        elif kind == "actions":
            lines.append("  ".join(_element_text(e, names) for e in block.get("elements") or []))
        elif kind == "divider":
            lines.append("────────")
        elif kind == "image":
            lines.append(f"[image: {block.get('alt_text', '')}]")
        elif kind == "rich_text":
            lines += _rich_text(block).splitlines()
        else:
            lines.append(f"[{kind} block]")
    return lines


def render_message(
    message: SlackMessage, names: SlackNames | None = None, *, emphasis: bool = False
) -> list[str]:
    """A message's lines: its blocks, else its text; then its reactions."""
    if message.blocks:
        lines = render_blocks(message.blocks, names, emphasis=emphasis)
    else:
        lines = readable(message.text, names, emphasis=emphasis).splitlines()
    if message.reactions:
        lines.append(
            "  ".join(f":{name}: {len(users)}" for name, users in message.reactions.items())
        )
    return lines
