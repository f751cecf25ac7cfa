"""The sandbox's own customer routes (not HighLevel's): list customers, make one reply."""

from __future__ import annotations

import asyncio
import contextlib
import json

from aiohttp import web

from ._api_base import ApiBase, _json
from ._errors import ApiError
from ._records import AmbiguousCustomer

__all__ = ["ControlEndpoints"]

_REPLY_FIELDS = ("body", "channel", "subject")


class ControlEndpoints(ApiBase):
    """``/_sandbox/customers...`` (part of the app's ``_Api``)."""

    async def list_customers(self, request: web.Request) -> web.Response:
        customers = [
            {"id": c.id, "name": c.name, "phone": c.phone, "email": c.email}
            for c in self.sim.contacts.values()
        ]
        return _json(200, {"customers": customers})

    async def make_customer_reply(self, request: web.Request) -> web.Response:
        """A customer answers: stored as HighLevel stores it, webhook sent as HighLevel sends it.

        Waits for the webhook's first answer (bounded) so the caller learns what became of it.
        """
        payload = _reply_payload(await request.read())
        sim = self.sim
        try:
            reply = await sim.reply_as(
                request.match_info["customer"],
                payload["body"],
                channel=payload.get("channel"),
                subject=payload.get("subject"),
            )
        except AmbiguousCustomer as exc:
            raise ApiError(409, {"statusCode": 409, "message": exc.args[0]}) from exc
        except LookupError as exc:
            raise ApiError(404, {"statusCode": 404, "message": exc.args[0]}) from exc
        except ValueError as exc:
            raise ApiError(422, {"statusCode": 422, "message": str(exc)}) from exc
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(min(sim.webhooks.timeout, 10.0) + 1.0):
                await reply.first_attempts()
        return _json(200, reply.to_json())


def _reply_payload(raw: bytes) -> dict[str, str]:
    example = 'Send JSON like {"body": "Is my order ready?", "channel": "SMS"}.'
    if not raw.strip():
        raise ApiError.bad_request(f"The request has no body. {example}")
    try:
        payload = json.loads(raw)
    except ValueError as exc:
        raise ApiError.bad_request(f"The body is not valid JSON. {example}") from exc
    if not isinstance(payload, dict):
        raise ApiError.bad_request(f"The body must be a JSON object. {example}")
    unknown = sorted(set(payload) - set(_REPLY_FIELDS))
    if unknown:
        raise ApiError.bad_request(
            f"Unknown field(s) {', '.join(unknown)}: use {', '.join(_REPLY_FIELDS)}."
        )
    text = payload.get("body")
    if not isinstance(text, str) or not text.strip():
        raise ApiError.bad_request(f'"body" must be the text the customer writes. {example}')
    for name in ("channel", "subject"):
        if name in payload and not isinstance(payload[name], str):
            raise ApiError.bad_request(f'"{name}" must be a string.')
    return payload
