"""Working a conversation: ``PUT /conversations/{conversationId}`` (unread count, star),
``GET /users/`` (the location's users), ``PUT /contacts/{contactId}`` (the contact's fields,
``assignedTo`` among them), and the ``ConversationUnreadUpdate`` webhook.

The simulator keeps ``unreadCount`` and ``starred`` per conversation, users per location and
``assignedTo`` per contact. A person working in HighLevel's own app is ``set_unread`` /
``set_starred`` (each sends a ``ConversationUnreadUpdate``, as HighLevel does when the
unread status changes); the API's PUT changes the state without one.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from . import _spec
from ._api_base import CONT, CONV, ApiBase, _json
from ._errors import ApiError
from ._inbox_state import UNREAD_EVENT, InboxStateMixin, SimUser
from ._models import now
from ._oauth_routes import PRINCIPAL_KEY

__all__ = [
    "CONTACT_PATH",
    "CONVERSATION_PATH",
    "UNREAD_EVENT",
    "USERS_PATH",
    "InboxRoutes",
    "InboxStateMixin",
    "SimUser",
]

CONVERSATION_PATH = "/conversations/{conversationId}"
CONTACT_PATH = "/contacts/{contactId}"
USERS_PATH = "/users/"
_NO_SCOPE = "The token is not authorized for this scope."


# PUT /contacts/{id} fields the simulator keeps on the contact itself; the rest go to `extra`.
class InboxRoutes(ApiBase):
    """The three endpoints, registered beside the others (see ``_routes.build_app``)."""

    def register(self, router: web.UrlDispatcher) -> None:
        router.add_put(CONVERSATION_PATH, self.update_conversation)
        router.add_get(USERS_PATH, self.list_users)
        router.add_put(CONTACT_PATH, self.update_contact)

    def _scope(self, request: web.Request, scope: str) -> None:
        """OAuth tokens carry the scopes their install granted (a PIT's are not recorded)."""
        token = request[PRINCIPAL_KEY]
        if token.kind == "access" and scope not in token.scope.split():
            raise ApiError.unauthorized(_NO_SCOPE)

    async def update_conversation(self, request: web.Request) -> web.Response:
        """``UpdateConversationDto`` → ``GetConversationSuccessfulResponse``."""
        self._query(request, CONV, CONVERSATION_PATH)
        body = await self._body(request, "UpdateConversationDto", CONV)
        location_id = self._check_location(request, body["locationId"])
        self._scope(request, "conversations.write")
        sim = self.sim
        conversation = sim.conversations.get(request.match_info["conversationId"])
        if conversation is None or sim.contacts[conversation.contact_id].location_id != location_id:
            raise ApiError.bad_request("Conversation not found")
        if "unreadCount" in body:
            count = body["unreadCount"]
            if count < 0 or count != int(count):
                raise ApiError.unprocessable(["unreadCount must be a whole number, 0 or more"])
            conversation.unread_count = int(count)
        if "starred" in body:
            conversation.starred = bool(body["starred"])
        answer: dict[str, Any] = {
            "id": conversation.id,
            "locationId": location_id,
            "contactId": conversation.contact_id,
            "unreadCount": conversation.unread_count,
            "inbox": True,
            "starred": conversation.starred,
            "deleted": False,
        }
        assigned = sim.assigned_to(conversation.contact_id)
        if assigned is not None:
            answer["assignedTo"] = assigned
        return _json(200, {"success": True, "conversation": answer})

    async def list_users(self, request: web.Request) -> web.Response:
        """``GET /users/?locationId=…`` → ``LocationSuccessfulResponseDto``."""
        query = self._query(request, _spec.USERS, USERS_PATH)
        location_id = self._check_location(request, query.get("locationId"))
        self._scope(request, "users.readonly")
        return _json(200, {"users": [u.to_api() for u in self.sim.users_of(location_id)]})

    async def update_contact(self, request: web.Request) -> web.Response:
        """``UpdateContactDto`` → ``UpdateContactsSuccessfulResponseDto``. ``assignedTo`` must
        name a user of the contact's location (or be null: unassigned)."""
        self._query(request, CONT, CONTACT_PATH)
        body = await self._body(request, "UpdateContactDto", CONT)
        sim = self.sim
        contact = sim.contacts.get(request.match_info["contactId"])
        if contact is None:
            raise ApiError.bad_request("Contact not found")
        self._check_location(request, contact.location_id)
        self._scope(request, "contacts.write")
        if "assignedTo" in body:
            user_id = body["assignedTo"]
            if user_id is not None and sim.user(contact.location_id, user_id) is None:
                raise ApiError.bad_request(f"User with id {user_id} not found")
        sim.update_contact(contact, body)
        contact.date_updated = now()
        return _json(200, {"succeded": True, "contact": contact.to_api(contact.location_id)})
