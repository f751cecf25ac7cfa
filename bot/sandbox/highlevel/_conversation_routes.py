"""Conversation endpoints: send, search, read, cancel scheduled (files: ``_file_routes``)."""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from . import _spec
from ._api_base import CONV, SEND_PATH, ApiBase, _json
from ._errors import ApiError
from ._models import CHANNELS
from ._oauth_routes import PRINCIPAL_KEY

__all__ = ["ConversationEndpoints"]


class ConversationEndpoints(ApiBase):
    """``/conversations/...`` and the uploaded files (part of the app's ``_Api``)."""

    async def send_message(self, request: web.Request) -> web.Response:
        self._query(request, CONV, SEND_PATH)
        body = await self._body(request, "SendMessageBodyDto", CONV)
        self._check_contact(request, body["contactId"])
        return _json(200, self.sim.send(body))

    async def create_conversation(self, request: web.Request) -> web.Response:
        """POST /conversations/: 201 with the new conversation; one per contact, and a second
        create is HighLevel's 400 without the existing id (highlevel-api-docs issue 5)."""
        self._query(request, CONV, "/conversations/")
        body = await self._body(request, "CreateConversationDto", CONV)
        self._check_location(request, body["locationId"])
        token = request[PRINCIPAL_KEY]
        if token.kind == "access" and "conversations.write" not in token.scope.split():
            raise ApiError.unauthorized("The token is not authorized for this scope.")
        sim = self.sim
        contact = sim.contacts.get(body["contactId"])
        if contact is None or contact.location_id != body["locationId"]:
            raise ApiError.bad_request("Contact not found")
        if sim.conversation_for(contact.id) is not None:
            raise ApiError.bad_request(
                f"HttpException Conversation with the contact id:{contact.id} already exists!"
            )
        conversation = sim._conversation(contact)
        now = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
        return _json(
            201,
            {
                "success": True,
                "conversation": {
                    "id": conversation.id,
                    "dateUpdated": now,
                    "dateAdded": now,
                    "deleted": False,
                    "contactId": contact.id,
                    "locationId": contact.location_id,
                    "lastMessageDate": now,
                },
            },
        )

    async def search_conversations(self, request: web.Request) -> web.Response:
        query = self._query(request, CONV, "/conversations/search")
        location_id = self._check_location(request, query.get("locationId"))
        sim = self.sim
        found = []
        horizon = time.monotonic() - sim.search_lag
        for conversation in sim.conversations.values():
            if sim.search_lag and conversation.created_monotonic > horizon:
                continue  # HighLevel's search index lags behind creation
            if sim.contacts[conversation.contact_id].location_id != location_id:
                continue
            entry = self._conversation_entry(conversation.id)
            if entry is None or not _matches(entry, query):
                continue
            found.append(entry)
        descending = query.get("sort", "desc") == "desc"
        found.sort(key=lambda e: e["lastMessageDate"], reverse=descending)
        start_after = _number(query.get("startAfterDate"))
        if start_after is not None:  # the sort value of the previous page's last
            found = [
                e
                for e in found
                if (
                    e["lastMessageDate"] < start_after
                    if descending
                    else e["lastMessageDate"] > start_after
                )
            ]
        limit = int(query.get("limit", 20))
        return _json(200, {"conversations": found[:limit], "total": len(found)})

    def _conversation_entry(self, conversation_id: str) -> dict[str, Any] | None:
        sim = self.sim
        conversation = sim.conversations[conversation_id]
        messages = sim.messages_for(conversation_id)
        if not messages:
            return None
        last = max(messages, key=lambda m: sim.activity_order(m.id))
        contact = sim.contacts[conversation.contact_id]
        last_body = last.visible_body
        if last.channel == "Email" and last.email_ids:
            last_body = sim.emails[last.email_ids[-1]].body
        return {
            "id": conversation.id,
            "contactId": contact.id,
            "locationId": contact.location_id,
            "lastMessageBody": last_body,
            "lastMessageType": CHANNELS[last.channel].message_type,
            "lastMessageDirection": last.direction,
            "lastMessageDate": int(last.date_updated.timestamp() * 1000),
            "type": "TYPE_PHONE" if contact.phone else "TYPE_EMAIL",
            "unreadCount": conversation.unread_count,
            "fullName": contact.name,
            "contactName": contact.name,
            "email": contact.email or "",
            "phone": contact.phone or "",
            "dateAdded": int(conversation.date_added.timestamp() * 1000),
        }

    async def get_conversation(self, request: web.Request) -> web.Response:
        self._query(request, CONV, "/conversations/{conversationId}")
        sim = self.sim
        conversation = sim.conversations.get(request.match_info["conversationId"])
        if conversation is None:
            raise ApiError.bad_request("Conversation not found")
        contact = sim.contacts[conversation.contact_id]
        self._check_location(request, contact.location_id)
        return _json(
            200,
            {
                "id": conversation.id,
                "contactId": conversation.contact_id,
                "locationId": contact.location_id,
                "deleted": False,
                "inbox": True,
                "type": 1 if contact.phone else 2,
                "unreadCount": conversation.unread_count,
                "starred": conversation.starred,
            },
        )

    async def list_messages(self, request: web.Request) -> web.Response:
        path = "/conversations/{conversationId}/messages"
        # `type` is a comma-separated list, which its single-value enum cannot express.
        query = self._query(request, CONV, path, skip=frozenset({"type"}))
        allowed_types = _spec.query_enum(CONV, "get", path, "type")
        wanted: set[str] | None = None
        if "type" in request.query:
            wanted = {part.strip() for part in request.query["type"].split(",") if part.strip()}
            unknown = sorted(wanted - allowed_types)
            if unknown:
                values = ", ".join(sorted(allowed_types))
                raise ApiError.unprocessable(
                    [f"type must be one of the following values: {values}"]
                )
        sim = self.sim
        conversation_id = request.match_info["conversationId"]
        if conversation_id not in sim.conversations:
            raise ApiError.bad_request("Conversation not found")
        location_id = self._check_conversation(request, conversation_id)
        messages = sorted(
            sim.messages_for(conversation_id),
            key=lambda m: sim.activity_order(m.id),
            reverse=True,  # newest first
        )
        if wanted is not None:
            messages = [m for m in messages if CHANNELS[m.channel].message_type in wanted]
        cursor = query.get("lastMessageId")
        if cursor is not None:
            ids = [m.id for m in messages]
            if cursor not in ids:
                raise ApiError.bad_request("lastMessageId not found in this conversation")
            messages = messages[ids.index(cursor) + 1 :]
        limit = max(1, min(int(query.get("limit", 20)), 100))
        page = messages[:limit]
        listing = {
            "lastMessageId": page[-1].id if page else "",
            "nextPage": len(messages) > limit,
            "messages": [m.to_api(location_id) for m in page],  # emails without body
        }
        # Real responses wrap the documented object one level deeper (highlevel-api-docs #54).
        return _json(200, {"messages": listing})

    async def get_message(self, request: web.Request) -> web.Response:
        self._query(request, CONV, "/conversations/messages/{id}")
        message = self.sim.messages.get(request.match_info["id"])
        if message is None:
            raise ApiError.bad_request("Message not found")
        location_id = self._check_contact(request, message.contact_id)
        self.sim.note_message_read(message)  # late WhatsApp media may arrive with this read
        # Real responses wrap the documented object (highlevel-api-docs #258, #212).
        return _json(200, {"message": message.to_api(location_id)})

    async def get_email(self, request: web.Request) -> web.Response:
        self._query(request, CONV, "/conversations/messages/email/{id}")
        email = self.sim.emails.get(request.match_info["id"])
        if email is None:
            raise ApiError.bad_request("Email message not found")
        location_id = self._check_contact(request, email.contact_id)
        # Independent public clients read this under `emailMessage`; the simulator wraps it.
        return _json(200, {"emailMessage": email.to_api(location_id)})

    async def cancel_message(self, request: web.Request) -> web.Response:
        self._query(request, CONV, "/conversations/messages/{messageId}/schedule")
        message = self.sim.messages.get(request.match_info["messageId"])
        if message is not None:
            self._check_contact(request, message.contact_id)
        cancelled = self.sim.cancel_scheduled(request.match_info["messageId"])
        return _cancel_answer(cancelled)

    async def cancel_email(self, request: web.Request) -> web.Response:
        self._query(request, CONV, "/conversations/messages/email/{emailMessageId}/schedule")
        email = self.sim.emails.get(request.match_info["emailMessageId"])
        if email is not None:
            self._check_contact(request, email.contact_id)
        cancelled = self.sim.cancel_scheduled_email(request.match_info["emailMessageId"])
        return _cancel_answer(cancelled)


def _cancel_answer(cancelled: bool) -> web.Response:
    # Failure is a 200 whose body says 404 (CancelScheduledResponseDto example).
    if cancelled:
        return _json(200, {"status": 200, "message": "Scheduled message cancelled successfully"})
    return _json(200, {"status": 404, "message": "Failed cancel the scheduled message"})


def _matches(entry: dict[str, Any], query: dict[str, Any]) -> bool:
    if "contactId" in query and entry["contactId"] != query["contactId"]:
        return False
    if "id" in query and entry["id"] != query["id"]:
        return False
    if "lastMessageType" in query and entry["lastMessageType"] != query["lastMessageType"]:
        return False
    if (
        "lastMessageDirection" in query
        and entry["lastMessageDirection"] != query["lastMessageDirection"]
    ):
        return False
    status = query.get("status")
    if status == "unread" and entry["unreadCount"] == 0:
        return False
    if status == "read" and entry["unreadCount"] > 0:
        return False
    text = str(query.get("query") or "").strip().lower()
    if text:
        haystack = " ".join(str(entry[key]) for key in ("fullName", "email", "phone")).lower()
        if text not in haystack:
            return False
    return True


def _number(value: object) -> float | None:
    """A query value that should be a number (query strings arrive as text); else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None
