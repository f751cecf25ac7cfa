"""The buttons of a send held for a choice: inside the contact's quiet hours (schedule it, or
send now anyway), or a quick send whose name matched several contacts (pick one)."""

from __future__ import annotations

import dataclasses
import json
import re
import time
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncRespond

from bot.deps import Deps
from bot.outbound import NOT_SAVED, SlackOrigin
from bot.outbound.intents import Intent, QuickSendIntent
from bot.ui.notice_builder import error_notice
from bot.ui.quick_send_builder import (
    PICK_CONTACT_ACTION,
    QUIET_SCHEDULE_ACTION,
    QUIET_SEND_ANYWAY_ACTION,
)

# How long the ack waits for the answered send to be saved (normally a millisecond).
INTENT_SAVE_WAIT_SECONDS = 2.0
# A scheduled time closer than this is sent now (HighLevel wants scheduledTimestamp ahead).
SCHEDULE_MARGIN_SECONDS = 60
GONE = "That message can no longer be sent from here (it was answered already, or is not yours)."
ANSWERED = "That message is already on its way."
CHOICES = re.compile(
    f"^({QUIET_SCHEDULE_ACTION}|{QUIET_SEND_ANYWAY_ACTION}|{PICK_CONTACT_ACTION}_\\d+)$"
)


def _answered(held: Intent, action_id: str, value: dict[str, Any]) -> Intent | None:
    """The held send as the button answers it, under one key for every answer: a second
    click (of either button) is a replay and sends nothing more."""
    draft = held.draft
    if action_id == QUIET_SCHEDULE_ACTION:
        at = value.get("at")
        if not isinstance(at, int) or isinstance(at, bool):
            return None
        schedule = at if at > time.time() + SCHEDULE_MARGIN_SECONDS else None
        draft = dataclasses.replace(draft, schedule_at=schedule)
    elif action_id == QUIET_SEND_ANYWAY_ACTION:
        draft = dataclasses.replace(draft, send_anyway=True)
    else:
        contact_id = value.get("c")
        if not isinstance(contact_id, str) or not contact_id:
            return None
        draft = dataclasses.replace(draft, recipient=contact_id)
    return dataclasses.replace(held, key=f"{held.key}:answer", draft=draft)


def register(app: AsyncApp, deps: Deps) -> None:
    @app.action(CHOICES)
    async def answer(
        ack: AsyncAck, body: dict[str, Any], action: dict[str, Any], respond: AsyncRespond
    ) -> None:
        try:
            value = json.loads(action.get("value") or "")
            key = value["k"]
        except (ValueError, KeyError, TypeError):
            await ack()
            return
        user = body.get("user") or {}
        origin = SlackOrigin(
            team_id=(body.get("team") or {}).get("id") or user.get("team_id", ""),
            channel_id=(body.get("channel") or {}).get("id", ""),
            user_id=user.get("id", ""),
        )
        held = await deps.intents.held(str(key), origin) if isinstance(key, str) else None
        answered = _answered(held, str(action.get("action_id")), value) if held else None
        if answered is None:
            await ack()
            text, blocks = error_notice("Nothing was sent", GONE)
            await respond(text=text, blocks=blocks, response_type="ephemeral")
            return
        if isinstance(answered, QuickSendIntent):
            answered = dataclasses.replace(answered, response_url=body.get("response_url"))
        recording = await deps.intents.record(answered, wait=INTENT_SAVE_WAIT_SECONDS)
        if recording.refused:
            await ack()
            text, blocks = error_notice("Couldn't send it", NOT_SAVED)
            await respond(text=text, blocks=blocks, response_type="ephemeral")
            return
        await ack()
        notice = await deps.intents.finish(answered, recording=recording, announce_queued=True)
        if notice is None:
            await respond(text=f"✓ {ANSWERED}", replace_original=True)
            return
        await respond(text=notice.text, blocks=notice.blocks, replace_original=True)
