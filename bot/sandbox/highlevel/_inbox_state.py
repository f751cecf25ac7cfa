"""The simulator's inbox state: users per location, and the ConversationUnreadUpdate webhook
(the routes are in ``_inbox_routes``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._oauth import SANDBOX_USER_ID

if TYPE_CHECKING:
    from ._locations import SimLocation
    from ._models import SimContact, SimConversation
    from ._webhooks import WebhookDelivery, WebhookSender

__all__ = ["UNREAD_EVENT", "InboxStateMixin", "SimUser"]

UNREAD_EVENT = "ConversationUnreadUpdate"


@dataclass
class SimUser:
    """A user of a location (``UserSchema`` of users.json)."""

    id: str
    first_name: str
    last_name: str
    email: str
    location_id: str

    @property
    def name(self) -> str:
        return " ".join(part for part in (self.first_name, self.last_name) if part)

    def to_api(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "firstName": self.first_name,
            "lastName": self.last_name,
            "email": self.email,
            "phone": "",
            "extension": "",
            "deleted": False,
        }


class InboxStateMixin:
    """Users per location, and the unread/star webhooks (part of ``HighLevelSimulator``)."""

    locations: dict[str, SimLocation]
    contacts: dict[str, SimContact]
    conversations: dict[str, SimConversation]
    webhooks: WebhookSender
    _users: dict[str, list[SimUser]] | None = None

    def users_of(self, location_id: str) -> list[SimUser]:
        """The location's users: two seeded ones (the sandbox's own user, who sends from the
        HighLevel app, and Dana at the desk), then those `add_user` added."""
        if self._users is None:
            self._users = {}
        if location_id not in self._users:
            location = self.locations.get(location_id)
            if location is None:
                raise KeyError(f"no location {location_id!r} in the sandbox")
            domain = f"location{location.index}.example.com"
            first_id = SANDBOX_USER_ID if location.index == 1 else f"sbxL{location.index:03d}User1"
            self._users[location_id] = [
                SimUser(first_id, "Sandbox", "User", f"sandbox.user@{domain}", location_id),
                SimUser(
                    f"sbxL{location.index:03d}User2", "Dana", "Desk", f"dana@{domain}", location_id
                ),
            ]
        return self._users[location_id]

    def add_user(
        self,
        first_name: str,
        last_name: str = "",
        *,
        email: str,
        location_id: str,
        user_id: str | None = None,
    ) -> SimUser:
        """A user of ``location_id`` that a contact can be assigned to."""
        users = self.users_of(location_id)
        user = SimUser(
            user_id or f"sbxUser{len(users) + 1:03d}{location_id[-9:]}",
            first_name,
            last_name,
            email,
            location_id,
        )
        users.append(user)
        return user

    def user(self, location_id: str, user_id: str) -> SimUser | None:
        return next((u for u in self.users_of(location_id) if u.id == user_id), None)

    def assigned_to(self, contact_id: str) -> str | None:
        """The user the contact is assigned to (``assignedTo``), if any."""
        value = self.contacts[contact_id].extra.get("assignedTo")
        return value if isinstance(value, str) else None

    def set_unread(self, conversation_id: str, unread_count: int) -> WebhookDelivery:
        """Someone in HighLevel's app changed the conversation's unread count (0: read it)."""
        self.conversations[conversation_id].unread_count = unread_count
        return self.unread_update(conversation_id)

    def set_starred(self, conversation_id: str, starred: bool) -> WebhookDelivery:
        """Someone in HighLevel's app starred (or unstarred) the conversation."""
        self.conversations[conversation_id].starred = starred
        return self.unread_update(conversation_id)

    def unread_update(self, conversation_id: str) -> WebhookDelivery:
        """Send the conversation's state as a ``ConversationUnreadUpdate`` webhook
        (docs/webhook-events/ConversationUnreadWebhook.md)."""
        conversation = self.conversations[conversation_id]
        contact = self.contacts[conversation.contact_id]
        return self.webhooks.emit(
            {
                "type": UNREAD_EVENT,
                "locationId": contact.location_id,
                "id": conversation.id,
                "contactId": contact.id,
                "deleted": False,
                "inbox": True,
                "starred": conversation.starred,
                "unreadCount": conversation.unread_count,
            }
        )
