"""The simulator's aiohttp app: the gateway and every endpoint group wired into routes."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from ._api_base import CONT as CONT
from ._api_base import (
    CONTROL_PREFIX,
    CUSTOMER_REPLY_PATH,
    FILES_PREFIX,
    SEND_PATH,
    SIGNED_UPLOAD_PREFIX,
)
from ._api_base import CONV as CONV
from ._api_base import Handler as Handler
from ._contact_routes import APPOINTMENTS_PATH, ContactEndpoints
from ._control_routes import ControlEndpoints
from ._conversation_routes import ConversationEndpoints
from ._file_routes import COMPLETE_PATH, INITIATE_PATH, UPLOAD_PATH, FileEndpoints
from ._files import UPLOAD_EXTENSIONS as UPLOAD_EXTENSIONS
from ._gateway import ACCEPTED_VERSIONS, GatewayMixin
from ._inbox_routes import InboxRoutes
from ._location_routes import LocationRoutes
from ._oauth_routes import OAuthRoutes

if TYPE_CHECKING:
    from ._simulator import HighLevelSimulator

__all__ = [
    "ACCEPTED_VERSIONS",
    "CONTROL_PREFIX",
    "CUSTOMER_REPLY_PATH",
    "FILES_PREFIX",
    "SEND_PATH",
    "build_app",
]


class _Api(GatewayMixin, ConversationEndpoints, FileEndpoints, ContactEndpoints, ControlEndpoints):
    """The gateway middleware and the endpoint handlers, on one simulator."""


def build_app(sim: HighLevelSimulator) -> web.Application:
    oauth = OAuthRoutes(sim)
    api = _Api(sim, oauth)
    # Room for one over-limit file, so it reaches our 413 instead of aiohttp's plain-text one.
    app = web.Application(
        middlewares=[api.gateway], client_max_size=sim.upload_max_bytes * 2 + 1024 * 1024
    )

    async def start_background(_app: web.Application) -> None:
        await sim.start_background()

    async def stop_background(_app: web.Application) -> None:
        await sim.shutdown_background()

    app.on_startup.append(start_background)
    app.on_cleanup.append(stop_background)
    router = app.router
    # Fixed paths before parameterised ones: aiohttp matches in registration order.
    router.add_post(SEND_PATH, api.send_message)
    router.add_post("/conversations/", api.create_conversation)
    router.add_post(UPLOAD_PATH, api.upload)
    router.add_post(INITIATE_PATH, api.upload_initiate)
    router.add_post(COMPLETE_PATH, api.upload_complete)
    router.add_get("/conversations/search", api.search_conversations)
    router.add_get("/conversations/messages/email/{id}", api.get_email)
    router.add_delete("/conversations/messages/email/{emailMessageId}/schedule", api.cancel_email)
    router.add_delete("/conversations/messages/{messageId}/schedule", api.cancel_message)
    router.add_get("/conversations/messages/{id}", api.get_message)
    router.add_get("/conversations/{conversationId}/messages", api.list_messages)
    router.add_get("/conversations/{conversationId}", api.get_conversation)
    router.add_post("/contacts/search", api.search_contacts)
    router.add_get("/contacts/search/duplicate", api.duplicate_contact)
    router.add_post("/contacts/upsert", api.upsert_contact)
    router.add_get(APPOINTMENTS_PATH, api.contact_appointments)
    router.add_get("/contacts/{contactId}", api.get_contact)
    router.add_get(FILES_PREFIX + "{fileId}/{filename}", api.download)  # HEAD too
    router.add_put(SIGNED_UPLOAD_PREFIX + "{token}", api.signed_put)
    router.add_get(CONTROL_PREFIX + "customers", api.list_customers)
    router.add_post(CUSTOMER_REPLY_PATH, api.make_customer_reply)
    oauth.register(router)
    LocationRoutes(sim).register(router)
    InboxRoutes(sim, oauth).register(router)
    return app
