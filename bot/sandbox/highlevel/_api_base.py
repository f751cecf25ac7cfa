"""What the HighLevel endpoints share: paths, JSON answers, body/query validation, access checks."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from . import _spec
from ._errors import ApiError
from ._media import FILES_PREFIX, SIGNED_UPLOAD_PREFIX
from ._oauth_routes import PRINCIPAL_KEY, RECORD_KEY, OAuthRoutes
from ._records import trace_id

if TYPE_CHECKING:
    from ._simulator import HighLevelSimulator

__all__ = [
    "CONT",
    "CONTROL_PREFIX",
    "CONV",
    "CUSTOMER_REPLY_PATH",
    "FILES_PREFIX",
    "SEND_PATH",
    "SIGNED_UPLOAD_PREFIX",
    "ApiBase",
    "Handler",
]

# The sandbox's own routes, for a person driving a dry run: not part of HighLevel's API.
CONTROL_PREFIX = "/_sandbox/"
CUSTOMER_REPLY_PATH = CONTROL_PREFIX + "customers/{customer}/reply"
SEND_PATH = "/conversations/messages"
CONV = _spec.CONVERSATIONS
CONT = _spec.CONTACTS

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _json(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> web.Response:
    if status >= 400:
        body = {**body, "traceId": trace_id()}
    return web.json_response(body, status=status, headers=headers)


class ApiBase:
    """The simulator and request helpers every endpoint group uses."""

    def __init__(self, sim: HighLevelSimulator, oauth: OAuthRoutes) -> None:
        self.sim = sim
        self.oauth = oauth

    # ------------------------------------------------------------------ request helpers

    def _strict(self) -> bool:
        return self.sim.strict_unknown_fields

    async def _body(self, request: web.Request, schema: str, document: str) -> dict[str, Any]:
        raw = await request.read()
        try:
            body = json.loads(raw) if raw.strip() else {}
        except ValueError as exc:
            raise ApiError(
                400,
                {
                    "statusCode": 400,
                    "message": f"Unexpected token in JSON at position {getattr(exc, 'pos', 0)}",
                    "error": "Bad Request",
                },
            ) from exc
        request[RECORD_KEY].body = body
        errors = _spec.request_errors(document, schema, body, strict=self._strict())
        if errors:
            raise ApiError.unprocessable(errors)
        if not isinstance(body, dict):  # the schema says object; keep mypy and reality agreed
            raise ApiError.unprocessable(["body must be an object"])
        return body

    def _query(
        self,
        request: web.Request,
        document: str,
        path: str,
        *,
        skip: frozenset[str] = frozenset(),
    ) -> dict[str, Any]:
        raw = {k: v for k, v in request.query.items() if k not in skip}
        query = _spec.coerce_query(document, request.method, path, raw)
        errors = _spec.query_errors(document, request.method, path, query, strict=self._strict())
        if errors:
            raise ApiError.unprocessable(errors)
        return query

    @staticmethod
    def _check_location(request: web.Request, location_id: object) -> str:
        """403 unless the request's token belongs to ``location_id``; returns it."""
        own = request[PRINCIPAL_KEY].location_id
        if own is None or location_id != own:
            raise ApiError.forbidden_location()
        return own

    def _check_contact(self, request: web.Request, contact_id: str) -> str:
        """403 for another location's contact; returns the location (unknown: the token's)."""
        contact = self.sim.contacts.get(contact_id)
        if contact is None:
            return self._check_location(request, request[PRINCIPAL_KEY].location_id)
        return self._check_location(request, contact.location_id)

    def _check_conversation(self, request: web.Request, conversation_id: str) -> str:
        conversation = self.sim.conversations.get(conversation_id)
        if conversation is None:
            return self._check_location(request, request[PRINCIPAL_KEY].location_id)
        return self._check_contact(request, conversation.contact_id)
