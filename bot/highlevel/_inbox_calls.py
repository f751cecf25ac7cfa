"""Inbox calls of the HighLevel client: a conversation's unread count and star
(PUT /conversations/{id}), the sub-account's users (GET /users/), and a contact's assignee
(PUT /contacts/{id} with ``assignedTo``).

Kept apart from `_client` (which mixes this in); every call still goes through the client's
`_request` (token, rate limit, retries, errors). Each is a PUT of absolute values, so
repeating one does no harm, but they are still sent as writes (``may_have_acted`` on a
timeout), the way every write of this client is.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, Field

from ._calls import ClientCalls
from ._conversation_models import Conversation
from ._models import _ResponseModel
from ._wire import _Kind, _seg

_ModelT = TypeVar("_ModelT", bound=BaseModel)

# GET /users/ is in users.json, whose Version is the contacts one.
USERS_PATH = "/users/"


class HighLevelUser(_ResponseModel):
    """One user of the sub-account (``UserSchema`` of users.json): who a contact can be
    assigned to."""

    id: str
    name: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    email: str | None = None

    @property
    def label(self) -> str:
        """How people see the user: the name, else first and last name, else the email."""
        full = " ".join(part for part in (self.first_name, self.last_name) if part)
        return self.name or full or self.email or self.id


class _UsersAnswer(_ResponseModel):
    users: list[HighLevelUser] = Field(default_factory=list)


class _UpdatedConversation(_ResponseModel):
    success: bool | None = None
    conversation: Conversation | None = None


class InboxCalls(ClientCalls):
    """Mixed into HighLevelClient."""

    async def update_conversation(
        self,
        conversation_id: str,
        *,
        unread_count: int | None = None,
        starred: bool | None = None,
    ) -> Conversation | None:
        """PUT /conversations/{id} (``UpdateConversationDto``): set the unread count (0: read)
        and/or the star. Returns the conversation HighLevel answers with, if it does."""
        body: dict[str, Any] = {"locationId": self._location_id}
        if unread_count is not None:
            body["unreadCount"] = unread_count
        if starred is not None:
            body["starred"] = starred
        if len(body) == 1:
            raise ValueError("give unread_count or starred")
        answer = await self._request(
            "PUT",
            f"/conversations/{_seg(conversation_id)}",
            kind=_Kind.WRITE,
            version=self._conversations_version,
            json=body,
        )
        return self._parse(_UpdatedConversation, answer, kind=_Kind.WRITE).conversation

    async def list_users(self) -> list[HighLevelUser]:
        """GET /users/?locationId=…: the sub-account's users (scope ``users.readonly``)."""
        answer = await self._request(
            "GET",
            USERS_PATH,
            kind=_Kind.READ,
            version=self._contacts_version,
            params={"locationId": self._location_id},
        )
        return self._parse(_UsersAnswer, answer, kind=_Kind.READ).users

    async def assign_contact(self, contact_id: str, user_id: str | None) -> None:
        """PUT /contacts/{id} with ``assignedTo`` (None: unassigned)."""
        # The answer (the updated contact) carries nothing the bridge keeps.
        await self._request(
            "PUT",
            f"/contacts/{_seg(contact_id)}",
            kind=_Kind.WRITE,
            version=self._contacts_version,
            json={"assignedTo": user_id},
        )
