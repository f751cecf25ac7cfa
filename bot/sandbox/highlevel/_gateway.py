"""The gateway every HighLevel request passes first: Version, token, rate limit, faults."""

from __future__ import annotations

import asyncio
import contextlib

from aiohttp import web

from ._api_base import (
    CONTROL_PREFIX,
    CUSTOMER_REPLY_PATH,
    FILES_PREFIX,
    SEND_PATH,
    SIGNED_UPLOAD_PREFIX,
    ApiBase,
    Handler,
    _json,
)
from ._errors import ApiError
from ._faults import FaultDecision, decide
from ._oauth_routes import PRINCIPAL_KEY, PUBLIC_OAUTH_PATHS, RECORD_KEY
from ._records import RequestRecord

__all__ = ["ACCEPTED_VERSIONS", "GatewayMixin"]

# The spec declares 2021-04-15 (conversations) and 2021-07-28 (contacts); the server accepts
# every published value on every established path. The TS SDK sends 2023-02-21, the Python SDK v3.
ACCEPTED_VERSIONS = frozenset({"2021-04-15", "2021-07-28", "2023-02-21", "v3"})


class GatewayMixin(ApiBase):
    """The aiohttp middleware in front of every endpoint (part of the app's ``_Api``)."""

    @web.middleware
    async def gateway(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith((FILES_PREFIX, SIGNED_UPLOAD_PREFIX)):
            return await handler(request)  # stands in for cloud storage URLs: no API rules
        if request.path.startswith(CONTROL_PREFIX):
            return await self._control(request, handler)
        record = RequestRecord(
            method=request.method,
            path=request.path,
            query=dict(request.query),
            headers=dict(request.headers),
        )
        self.sim.requests.append(record)
        request[RECORD_KEY] = record
        try:
            if request.path in PUBLIC_OAUTH_PATHS:  # a browser or a client secret: no gateway
                response = await self._public(request, handler)
            else:
                response = await self._through_gateway(request, handler)
        except asyncio.CancelledError:
            record.status = 499  # the client gave up (nginx's code for it)
            raise
        record.status = response.status
        return response

    async def _public(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await self.oauth.public(request, handler)
        except (web.HTTPNotFound, web.HTTPMethodNotAllowed):
            message = f"Cannot {request.method} {request.path}"
            return _json(404, {"statusCode": 404, "message": message, "error": "Not Found"})

    async def _control(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """The sandbox's own routes: no Version, token, rate limit, faults or request record."""
        try:
            return await handler(request)
        except ApiError as exc:
            return _json(exc.status, exc.body)
        except web.HTTPMethodNotAllowed as exc:
            allowed = ", ".join(sorted(exc.allowed_methods))
            message = f"{request.method} {request.path}: use {allowed}"
            return _json(405, {"statusCode": 405, "message": message})
        except web.HTTPNotFound:
            message = (
                f"No sandbox route {request.method} {request.path}. There are "
                f"GET {CONTROL_PREFIX}customers, POST {CUSTOMER_REPLY_PATH}, "
                f"GET {CONTROL_PREFIX}locations and POST {CONTROL_PREFIX}locations/{{id}}/"
                "install (or /uninstall)."
            )
            return _json(404, {"statusCode": 404, "message": message})

    async def _through_gateway(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        sim = self.sim
        version = request.headers.get("Version")
        unlimited = sim.limiter.state().headers()  # rejected before counting, still reported
        # The contract: a missing or unknown Version is a 400 (BadRequestDTO shape).
        if version is None:
            body = {"statusCode": 400, "message": "version header was not found."}
            return _json(400, body, unlimited)
        if version not in ACCEPTED_VERSIONS:
            return _json(
                400, {"statusCode": 400, "message": "version header is invalid"}, unlimited
            )
        try:
            principal = sim.authenticate(request.headers.get("Authorization"))
        except ApiError as exc:
            return _json(exc.status, exc.body, unlimited)
        request[PRINCIPAL_KEY] = principal
        limit = sim.limiter_for(principal.resource_id).hit()
        if not limit.allowed:
            return _json(429, {"statusCode": 429, "message": "Too Many Requests"}, limit.headers())
        is_send = request.method == "POST" and request.path == SEND_PATH
        decision = decide(sim.faults, sim.rng, is_send=is_send)
        response = await self._with_faults(request, handler, decision)
        for name, value in limit.headers().items():
            response.headers.setdefault(name, value)  # an injected 429 keeps its "0 remaining"
        return response

    async def _with_faults(
        self,
        request: web.Request,
        handler: Handler,
        decision: FaultDecision | None,
    ) -> web.StreamResponse:
        sim = self.sim
        if decision is not None:
            faults = sim.faults
            if faults.latency > 0:
                await asyncio.sleep(faults.latency)
            if decision.hang:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(sim.stopping.wait(), faults.hang_seconds)
                if sim.stopping.is_set():
                    return _json(503, {"statusCode": 503, "message": "Service Unavailable"})
            if decision.status_429:
                headers = sim.limiter.state().headers()
                headers["X-RateLimit-Remaining"] = "0"
                return _json(429, {"statusCode": 429, "message": "Too Many Requests"}, headers)
            if decision.server_error:
                status = faults.error_status
                return _json(status, {"statusCode": status, "message": "Internal server error"})
        try:
            response = await handler(request)
        except ApiError as exc:
            return _json(exc.status, exc.body)
        except web.HTTPRequestEntityTooLarge:
            return _json(413, {"status": 413, "message": "File size exceeds the limit"})
        except (web.HTTPNotFound, web.HTTPMethodNotAllowed):
            return _json(
                404,
                {
                    "statusCode": 404,
                    "message": f"Cannot {request.method} {request.path}",
                    "error": "Not Found",
                },
            )
        if decision is not None and decision.store_then_500 and response.status == 200:
            # The double-send hazard: the message IS stored and its webhook queued.
            return _json(500, {"statusCode": 500, "message": "Internal server error"})
        return response
