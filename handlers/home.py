"""The App Home: `app_home_opened` (and Refresh) publish the person's Home tab; "Find a
contact" opens the search modal, its submission searches, and Open opens the contact's thread.

Every value a form carries (the sub-account, the contact) is checked again by `HomeTab`
against what the person's workspace may see.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncBoltContext
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.deps import Deps
from bot.ui.home_builder import (
    HOME_OPEN_ACTION,
    HOME_REFRESH_ACTION,
    HOME_SEARCH_ACTION,
    HOME_SEARCH_CALLBACK,
    QUERY_ACTION,
    QUERY_BLOCK,
    SearchState,
    location_of,
    search_modal,
)

log = logging.getLogger(__name__)

# A submission is answered within Slack's 3 s: the search waits this long at most (it goes
# on, and its answer is kept by the composer's cache for the next press of Search).
SEARCH_WAIT_SECONDS = 2.0
SLOW_SEARCH = "HighLevel is taking a moment: press Search again."


def _team(body: dict[str, Any], context: AsyncBoltContext) -> str:
    return context.team_id or str((body.get("team") or {}).get("id") or "")


def _user(body: dict[str, Any]) -> str:
    return str((body.get("user") or {}).get("id") or "")


def _value(body: dict[str, Any]) -> str | None:
    actions = body.get("actions") or [{}]
    value = actions[0].get("value") if isinstance(actions[0], dict) else None
    return value if isinstance(value, str) and value else None


def _query(view: dict[str, Any]) -> str:
    values = (view.get("state") or {}).get("values") or {}
    entry = (values.get(QUERY_BLOCK) or {}).get(QUERY_ACTION) or {}
    value = entry.get("value")
    return " ".join(value.split()) if isinstance(value, str) else ""


def register(app: AsyncApp, deps: Deps) -> None:
    @app.event("app_home_opened")
    async def home_opened(event: dict[str, Any], context: AsyncBoltContext) -> None:
        # The Messages tab opens it too: only the Home tab is ours to draw.
        if deps.home is None or event.get("tab", "home") != "home":
            return
        deps.home.refresh(context.team_id or "", str(event.get("user") or ""))

    @app.action(HOME_REFRESH_ACTION)
    async def refresh(ack: AsyncAck, body: dict[str, Any], context: AsyncBoltContext) -> None:
        await ack()
        if deps.home is not None:
            deps.home.refresh(_team(body, context), _user(body))

    @app.action(HOME_SEARCH_ACTION)
    async def open_search(
        ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient, context: AsyncBoltContext
    ) -> None:
        await ack()
        if deps.home is None:
            return
        state = await deps.home.search_start(_team(body, context), _value(body))
        if state is None:
            log.info("%s asked to search a sub-account they may not see", _user(body))
            deps.home.refresh(_team(body, context), _user(body))  # show what they can see
            return
        try:
            await client.views_open(trigger_id=body["trigger_id"], view=search_modal(state))
        except SlackApiError as exc:
            log.info("the Home tab's search could not open: %s", exc.response.get("error"))

    @app.view(HOME_SEARCH_CALLBACK)
    async def search(ack: AsyncAck, body: dict[str, Any], context: AsyncBoltContext) -> None:
        view = body.get("view") or {}
        query = _query(view)
        if not query:
            await ack(
                response_action="errors", errors={QUERY_BLOCK: "Type a name, phone or email."}
            )
            return
        location_id = location_of(view.get("private_metadata") or "")
        if deps.home is None:
            await ack()
            return
        try:
            state = await asyncio.wait_for(
                deps.home.search(_team(body, context), location_id, query), SEARCH_WAIT_SECONDS
            )
        except TimeoutError:
            state = SearchState(location_id or "", "", query, problem=SLOW_SEARCH)
        await ack(response_action="update", view=search_modal(state))

    @app.action(HOME_OPEN_ACTION)
    async def open_contact(
        ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient, context: AsyncBoltContext
    ) -> None:
        await ack()
        view = body.get("view") or {}
        contact_id = _value(body)
        if deps.home is None or not contact_id or not view.get("id"):
            return
        state = await deps.home.open_contact(
            _team(body, context),
            _user(body),
            location_of(view.get("private_metadata") or ""),
            contact_id,
            _query(view),
        )
        try:
            await client.views_update(view_id=view["id"], view=search_modal(state))
        except SlackApiError as exc:
            log.info("the search modal could not show the thread: %s", exc.response.get("error"))
