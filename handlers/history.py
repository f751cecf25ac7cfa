"""The "Earlier messages" button on a thread root: ack, then hand over to ConversationHistory."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncRespond

from bot.deps import Deps
from bot.inbox.history import HistoryOutcome, outcome_notice
from bot.ui.conversation_builder import EARLIER_ACTION
from bot.ui.history_builder import HistoryProblem
from storage import StoreError

log = logging.getLogger(__name__)


def _thread_id(body: dict[str, Any]) -> int | None:
    value = str((body.get("actions") or [{}])[0].get("value") or "")
    return int(value) if value.isdigit() else None


def register(app: AsyncApp, deps: Deps) -> None:
    history = deps.history

    @app.action(EARLIER_ACTION)
    async def earlier_messages(ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond) -> None:
        await ack()
        thread_id = _thread_id(body)
        team_id = (body.get("team") or {}).get("id") or None
        try:
            if history is None:  # a bridge built without it (some tests)
                outcome = HistoryOutcome(problem=HistoryProblem.UNAVAILABLE)
            elif thread_id is None:
                outcome = HistoryOutcome(problem=HistoryProblem.UNKNOWN_THREAD)
            else:
                outcome = await history.show_earlier(thread_id, team_id=team_id)
        except StoreError as exc:
            log.warning("earlier messages of thread %s: the store failed: %s", thread_id, exc)
            outcome = HistoryOutcome(problem=HistoryProblem.DATABASE)
        notice = outcome_notice(outcome)
        if notice is not None:
            text, blocks = notice
            await respond(
                text=text, blocks=blocks, response_type="ephemeral", replace_original=False
            )
