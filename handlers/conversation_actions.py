"""The conversation menu on a thread root: mark read/unread, star/unstar, assign (a modal)."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncRespond
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.deps import Deps
from bot.inbox.actions import ASSIGN_VERB, NOT_HERE, ActionRefused
from bot.ui.assign_builder import (
    ASSIGN_BLOCK,
    ASSIGN_CALLBACK,
    ASSIGN_SELECT,
    assign_loading_view,
    assign_metadata,
    assign_problem_view,
    assign_view,
    done_notice,
    read_assign_metadata,
)
from bot.ui.conversation_builder import CONVERSATION_MENU_ACTION, menu_choice
from bot.ui.notice_builder import error_notice

log = logging.getLogger(__name__)

_NOT_RUNNING = ActionRefused("The conversation menu is not available", "Try again shortly.")


def _chosen(body: dict[str, Any]) -> str:
    action = (body.get("actions") or [{}])[0]
    return str((action.get("selected_option") or {}).get("value") or "")


def _where(body: dict[str, Any]) -> tuple[str, str, str]:
    """The clicker's workspace, channel and user."""
    return (
        str((body.get("team") or {}).get("id") or ""),
        str((body.get("channel") or {}).get("id") or ""),
        str((body.get("user") or {}).get("id") or ""),
    )


def register(app: AsyncApp, deps: Deps) -> None:
    async def tell(respond: AsyncRespond, text: str, blocks: list[Any]) -> None:
        await respond(text=text, blocks=blocks, response_type="ephemeral", replace_original=False)

    @app.action(CONVERSATION_MENU_ACTION)
    async def menu(
        ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient, respond: AsyncRespond
    ) -> None:
        await ack()
        team_id, channel_id, user_id = _where(body)
        choice = menu_choice(_chosen(body))
        try:
            actions = deps.conversation_actions
            if actions is None:
                raise _NOT_RUNNING
            if choice is None:
                raise ActionRefused("Can't do that here", NOT_HERE)
            verb, thread_id = choice
            if verb != ASSIGN_VERB:
                done = await actions.flag(verb, thread_id, team_id=team_id, channel_id=channel_id)
                await tell(respond, *done_notice(done))
                return
            thread = await actions.thread_for(thread_id, team_id=team_id, channel_id=channel_id)
        except ActionRefused as exc:
            await tell(respond, *error_notice(exc.title, exc.detail))
            return
        # Assign: the modal opens at once (the trigger lasts 3 s), then shows HighLevel's users.
        metadata = assign_metadata(thread.id, channel_id)
        opened = await client.views_open(
            trigger_id=body["trigger_id"], view=assign_loading_view(metadata)
        )
        view_id = str((opened.get("view") or {}).get("id") or "")
        try:
            form = await actions.assign_form(thread, user_id=user_id)
            view = assign_view(metadata, form.contact_label, form.assignees, form.default)
        except ActionRefused as exc:
            view = assign_problem_view(exc.title, exc.detail)
        await client.views_update(view_id=view_id, view=view)

    @app.view(ASSIGN_CALLBACK)
    async def assign(ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient) -> None:
        await ack()
        view = body.get("view") or {}
        team_id = str((body.get("team") or {}).get("id") or "")
        user_id = str((body.get("user") or {}).get("id") or "")
        where = read_assign_metadata(str(view.get("private_metadata") or ""))
        state = ((view.get("state") or {}).get("values") or {}).get(ASSIGN_BLOCK) or {}
        chosen = str(
            ((state.get(ASSIGN_SELECT) or {}).get("selected_option") or {}).get("value") or ""
        )
        if where is None:
            log.warning("an Assign modal without its thread was submitted; ignored")
            return
        thread_id, channel_id = where
        try:
            actions = deps.conversation_actions
            if actions is None:
                raise _NOT_RUNNING
            if not chosen:
                raise ActionRefused("Nobody was chosen", "Pick a HighLevel user, then Assign.")
            await actions.assign(thread_id, chosen, team_id=team_id, user_id=user_id)
        except ActionRefused as exc:
            text, blocks = error_notice(exc.title, exc.detail)
            try:
                await client.chat_postEphemeral(
                    channel=channel_id, user=user_id, text=text, blocks=blocks
                )
            except SlackApiError as failure:
                log.info(
                    "could not tell about a refused assignment: %s", failure.response.get("error")
                )
