"""The composer's searches (Slack's `block_suggestion`): the recipient among the sub-account's
contacts, and HighLevel's templates. Slack waits 3 s for options; a slow HighLevel is
answered with a "keep typing" option, never an error."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Final

from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_sdk.models.blocks import Option

from bot.compose import ComposeField, ContactCard, Draft
from bot.compose.assist import SEARCH_RESULTS
from bot.deps import Deps
from bot.highlevel import HighLevelError
from bot.recipients import RecipientError, RecipientKind, parse_recipient
from bot.ui.compose_builder import recipient_label
from bot.ui.compose_sections import OPTION_TEXT_MAX
from bot.ui.compose_state import KEEP_TYPING, decode_context, read_draft
from bot.ui.thread_builder import clip
from handlers.compose_view import location_of, origin_of

log = logging.getLogger(__name__)

# Slack shows an error after 3 s: answer well before, whatever HighLevel does.
OPTIONS_SECONDS: Final = 2.0
OPTIONS_MAX: Final = 100
TEMPLATE_KINDS: Final = {"sms": "SMS", "email": "Email", "whatsapp": "WhatsApp"}


def _option(value: str, text: str, description: str | None = None) -> dict[str, Any]:
    option = Option(
        value=value[:150],
        text=clip(text, OPTION_TEXT_MAX),
        description=clip(description, OPTION_TEXT_MAX) if description else None,
    )
    return option.to_dict()


def _keep_typing(why: str) -> list[dict[str, Any]]:
    return [_option(KEEP_TYPING, why)]


def register(app: AsyncApp, deps: Deps) -> None:
    region = deps.settings.phone_default_region

    async def _where(body: dict[str, Any]) -> tuple[str, Draft] | None:
        view = body.get("view") or {}
        try:
            context = decode_context(view.get("private_metadata") or "")
        except ValueError:
            return None
        draft = read_draft((view.get("state") or {}).get("values") or {})
        origin = origin_of(body, context)
        return await location_of(deps, draft, context, origin), draft

    @app.options(ComposeField.RECIPIENT.value)
    async def recipients(ack: AsyncAck, body: dict[str, Any]) -> None:
        typed = str(body.get("value") or "").strip()
        where = await _where(body)
        options: list[dict[str, Any]] = []
        try:
            new = parse_recipient(typed, region)
        except RecipientError:
            new = None
        if where is None or not where[0]:
            # No sub-account to search yet: a number or address still works.
            if new is not None:
                options.append(_option(new.value, f"Send to {new.value}"))
            else:
                options += _keep_typing("Choose the sub-account first")
            await ack(options=options)
            return
        location_id = where[0]
        try:
            found = await asyncio.wait_for(deps.assist.search(location_id, typed), OPTIONS_SECONDS)
        except (HighLevelError, TimeoutError) as exc:
            log.info("contact search in %s did not answer in time: %s", location_id, type(exc))
            found = None
        if found is None:
            options += _keep_typing("Still searching… keep typing")
        else:
            for contact in found[:SEARCH_RESULTS]:
                about = contact.company_name or (contact.email if contact.phone else None)
                options.append(
                    _option(
                        contact.id,
                        recipient_label(ContactCard.of(contact)),
                        about,
                    )
                )
        if new is not None and new.kind is not RecipientKind.CONTACT_ID:
            known = found or ()
            if not any(new.value in {c.phone, (c.email or "").lower()} for c in known):
                options.append(_option(new.value, f"New contact: {new.value}"))
        if not options:
            options += _keep_typing(f"No contact matches “{clip(typed, 40)}”")
        await ack(options=options[:OPTIONS_MAX])

    @app.options(ComposeField.TEMPLATE.value)
    async def templates(ack: AsyncAck, body: dict[str, Any]) -> None:
        typed = " ".join(str(body.get("value") or "").split()).lower()
        where = await _where(body)
        if where is None or not where[0]:
            await ack(options=_keep_typing("Choose the sub-account first"))
            return
        try:
            found = await asyncio.wait_for(deps.assist.templates(where[0]), OPTIONS_SECONDS)
        except (HighLevelError, TimeoutError):
            await ack(options=_keep_typing("HighLevel is slow: try again in a moment"))
            return
        matching = [t for t in found if typed in (t.name or "").lower()]
        options = [
            _option(t.id, t.name or t.id, TEMPLATE_KINDS.get(t.kind.value, t.kind.value))
            for t in matching[:OPTIONS_MAX]
        ]
        if not options:
            why = "No templates in this sub-account" if not found else "No template by that name"
            options = _keep_typing(why)
        await ack(options=options)
