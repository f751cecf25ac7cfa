"""Stacks with several HighLevel sub-accounts connected, for the `/highlevel` and routing tests.

The first location is the bridge's Private Integration Token one (GHL_API_TOKEN); the others
are connected in the store before the bridge starts (PIT-style rows), so the bridge sees all of
them from its first request. Only the first can send: the bridge holds only its token.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from bot.sandbox.highlevel import HighLevelSimulator
from bot.sandbox.slack import SlackMessage, SlackSimulator
from bot.sandbox.stack import AGENT_USER, SandboxStack
from storage import create_store
from tests.e2e.conftest import stack_on


async def several_accounts_stack(
    database_url: str,
    *,
    locations: int = 3,
    admins: Iterable[str] = (AGENT_USER,),
    disconnected: dict[str, str] | None = None,
    settings_overrides: dict[str, Any] | None = None,
) -> SandboxStack:
    """A stack (not started) whose bridge has `locations` sub-accounts connected, named as the
    simulator names them; `disconnected` maps location index ("2") to the reason it was lost."""
    highlevel = HighLevelSimulator(locations=locations)
    async with create_store(database_url) as store:
        for location_id in highlevel.location_ids:
            await store.save_location(
                location_id, auth="pit", name=highlevel.location_name(location_id)
            )
        for index, reason in (disconnected or {}).items():
            await store.disconnect_location(highlevel.location_ids[int(index) - 1], reason)
    slack = SlackSimulator(post_rate_per_second=50.0, post_burst=50, admins=admins)
    return stack_on(
        database_url, highlevel=highlevel, slack=slack, settings_overrides=settings_overrides
    )


def answer_text(result_json: Any) -> str:
    """Everything a person reads in a command's ephemeral answer."""
    assert isinstance(result_json, dict), result_json
    assert result_json.get("response_type") == "ephemeral", result_json
    parts = [str(result_json.get("text", ""))]
    for block in result_json.get("blocks") or []:
        if isinstance(block.get("text"), dict):
            parts.append(block["text"].get("text", ""))
        for element in block.get("elements") or []:
            if isinstance(element, dict) and isinstance(element.get("text"), str):
                parts.append(element["text"])
    return "\n".join(parts)


def blocks_text(message: SlackMessage) -> str:
    parts = [message.text or ""]
    for block in message.blocks or []:
        if isinstance(block.get("text"), dict):
            parts.append(block["text"].get("text", ""))
    return "\n".join(parts)
