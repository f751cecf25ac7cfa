"""HTTP side of the Marketplace app: chooselocation, /oauth/*, and install/uninstall controls."""

from __future__ import annotations

import asyncio
import contextlib
import html
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urlsplit

from aiohttp import web

from ._errors import ApiError
from ._oauth import OAuthError, SimToken
from ._simulator import RequestRecord, trace_id

if TYPE_CHECKING:
    from ._simulator import HighLevelSimulator
    from ._webhooks import WebhookDelivery

__all__ = [
    "CHOOSE_LOCATION_PATHS",
    "LOCATIONS_CONTROL_PATH",
    "OAUTH_TOKEN_PATH",
    "PRINCIPAL_KEY",
    "PUBLIC_OAUTH_PATHS",
    "RECORD_KEY",
    "OAuthRoutes",
]

OAUTH_TOKEN_PATH = "/oauth/token"  # noqa: S105 - a path
# The marketplace's real URL has /v2; the bridge builds {GHL_MARKETPLACE_URL}/oauth/chooselocation.
CHOOSE_LOCATION_PATHS = ("/oauth/chooselocation", "/v2/oauth/chooselocation")
# Neither a Version header nor a bearer token: a browser and a client secret reach these.
PUBLIC_OAUTH_PATHS = frozenset({OAUTH_TOKEN_PATH, *CHOOSE_LOCATION_PATHS})
LOCATIONS_CONTROL_PATH = "/_sandbox/locations"
FORM = "application/x-www-form-urlencoded"
# HighLevel's answer to a Location token on an agency-only route (community reports).
_AGENCY_ONLY = (
    "This authClass type is not allowed to access this scope. "
    "Please reach out to the Platform team to get it added."
)
_WEBHOOK_WAIT_SECONDS = 11.0

PRINCIPAL_KEY = web.RequestKey("highlevel_sandbox_principal", SimToken)
RECORD_KEY = web.RequestKey("highlevel_sandbox_record", RequestRecord)


def _json(status: int, body: dict[str, Any]) -> web.Response:
    if status >= 400:
        body = {**body, "traceId": trace_id()}
    return web.json_response(body, status=status)


def _page(status: int, title: str, text: str) -> web.Response:
    body = (
        f"<!doctype html><html><head><title>{html.escape(title)}</title></head>"
        f"<body><h1>{html.escape(title)}</h1><p>{html.escape(text)}</p></body></html>"
    )
    return web.Response(status=status, text=body, content_type="text/html")


class OAuthRoutes:
    def __init__(self, sim: HighLevelSimulator) -> None:
        self.sim = sim

    def register(self, router: web.UrlDispatcher) -> None:
        for path in CHOOSE_LOCATION_PATHS:
            router.add_get(path, self.choose_location)
        router.add_post(OAUTH_TOKEN_PATH, self.token)
        router.add_get("/oauth/installedLocations", self.installed_locations)
        router.add_post("/oauth/locationToken", self.location_token)
        router.add_get(LOCATIONS_CONTROL_PATH, self.list_locations)
        router.add_post(LOCATIONS_CONTROL_PATH + "/{locationId}/install", self.control_install)
        router.add_post(LOCATIONS_CONTROL_PATH + "/{locationId}/uninstall", self.control_uninstall)

    async def public(self, request: web.Request, handler: Any) -> web.StreamResponse:
        """Run a public OAuth route: its errors are RFC 6749 bodies, not HighLevel's."""
        try:
            response: web.StreamResponse = await handler(request)
        except OAuthError as exc:
            return web.json_response(exc.body, status=exc.status)
        return response

    # ------------------------------------------------------------------ consent screen

    async def choose_location(self, request: web.Request) -> web.Response:
        """The consent screen, already answered: 302 to redirect_uri with a code."""
        sim, query = self.sim, request.query
        if query.get("client_id") != sim.oauth.client_id:
            return _page(400, "Invalid client", "No Marketplace app has this client_id.")
        if query.get("response_type") != "code":
            return _page(400, "Invalid request", "response_type must be code.")
        redirect_uri = query.get("redirect_uri", "")
        parts = urlsplit(redirect_uri)
        if parts.scheme not in {"http", "https"} or not parts.netloc:
            return _page(400, "Invalid request", "redirect_uri must be an http(s) URL.")
        company = query.get("user_type", "Location") == "Company"
        if company:
            location_id = None
            approved = sim.location_ids
        else:
            location_id = query.get("location") or sim.location_id
            if location_id not in sim.locations:
                return _page(400, "Unknown location", f"No location {location_id} here.")
            approved = [location_id]
        code = sim.oauth.issue_code(
            redirect_uri=redirect_uri,
            scope=query.get("scope", ""),
            user_type="Company" if company else "Location",
            location_id=location_id,
            approved_locations=approved,
        )
        # HighLevel installs the app on consent and says so with an INSTALL webhook.
        sim.mark_installed(approved)
        sim.webhooks.emit(sim.install_payload(location_id))
        params = {"code": code}
        if "state" in query:
            params["state"] = query["state"]
        glue = "&" if parts.query else "?"
        return web.Response(
            status=302, headers={"Location": redirect_uri + glue + urlencode(params)}
        )

    # ------------------------------------------------------------------ POST /oauth/token

    async def token(self, request: web.Request) -> web.Response:
        if request.content_type != FORM:
            raise OAuthError(
                400,
                "invalid_request",
                "Invalid request: content must be application/x-www-form-urlencoded",
            )
        form = {key: str(value) for key, value in (await request.post()).items()}
        if RECORD_KEY in request:
            request[RECORD_KEY].body = form
        return web.json_response(self.sim.oauth.token_endpoint(form))

    # ------------------------------------------------------------------ agency-only routes

    def _company_token(self, request: web.Request, company_id: str) -> SimToken:
        token = request[PRINCIPAL_KEY]
        if token.user_type != "Company":
            raise ApiError.unauthorized(_AGENCY_ONLY)
        if company_id != token.company_id:
            raise ApiError(
                403,
                {
                    "statusCode": 403,
                    "message": "The token does not have access to this company.",
                    "error": "Forbidden",
                },
            )
        return token

    async def installed_locations(self, request: web.Request) -> web.Response:
        query = request.query
        missing = [
            f"{name} should not be empty" for name in ("companyId", "appId") if not query.get(name)
        ]
        if missing:
            raise ApiError.unprocessable(missing)
        self._company_token(request, query["companyId"])
        sim = self.sim
        if query["appId"] != sim.oauth.app_id:
            raise ApiError.bad_request("App not found")
        locations = list(sim.locations.values())
        if "isInstalled" in query:
            wanted = query["isInstalled"].lower() == "true"
            locations = [loc for loc in locations if loc.installed == wanted]
        if query.get("locationId"):
            locations = [loc for loc in locations if loc.id == query["locationId"]]
        if query.get("query"):
            text = query["query"].lower()
            locations = [loc for loc in locations if text in loc.name.lower()]
        try:
            skip, limit = int(query.get("skip", "0")), int(query.get("limit", "20"))
        except ValueError as exc:
            raise ApiError.unprocessable(["skip and limit must be numbers"]) from exc
        page = locations[skip : skip + limit]
        return _json(
            200,
            {
                "locations": [loc.to_installed_api() for loc in page],
                "count": len(locations),
                "installToFutureLocations": False,
            },
        )

    async def location_token(self, request: web.Request) -> web.Response:
        if request.content_type != FORM:
            raise ApiError.bad_request("The body must be application/x-www-form-urlencoded")
        form = {key: str(value) for key, value in (await request.post()).items()}
        missing = [
            f"{name} should not be empty"
            for name in ("companyId", "locationId")
            if not form.get(name)
        ]
        if missing:
            raise ApiError.unprocessable(missing)
        company_token = self._company_token(request, form["companyId"])
        location = self.sim.locations.get(form["locationId"])
        if location is None:
            raise ApiError.bad_request("Location not found")
        if not location.installed:
            raise ApiError.bad_request("The app is not installed on this location")
        return _json(200, self.sim.oauth.location_token(company_token, location.id))

    # ------------------------------------------------------------------ sandbox control

    async def list_locations(self, request: web.Request) -> web.Response:
        sim = self.sim
        return _json(
            200,
            {
                "companyId": sim.company_id,
                "appId": sim.oauth.app_id,
                "locations": [
                    {
                        "id": loc.id,
                        "name": loc.name,
                        "installed": loc.installed,
                        "token": sim.pit_for(loc.id),
                        "contacts": [c.id for c in sim.contacts_of(loc.id)],
                    }
                    for loc in sim.locations.values()
                ],
            },
        )

    async def control_install(self, request: web.Request) -> web.Response:
        location_id = self._known(request)
        return await self._answer(location_id, True, await self.sim.install(location_id))

    async def control_uninstall(self, request: web.Request) -> web.Response:
        location_id = self._known(request)
        return await self._answer(location_id, False, await self.sim.uninstall(location_id))

    def _known(self, request: web.Request) -> str:
        location_id = request.match_info["locationId"]
        if location_id not in self.sim.locations:
            known = ", ".join(self.sim.location_ids)
            message = f"No location {location_id!r} in the sandbox; there are {known}."
            raise ApiError(404, {"statusCode": 404, "message": message})
        return location_id

    async def _answer(
        self, location_id: str, installed: bool, delivery: WebhookDelivery
    ) -> web.Response:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(min(self.sim.webhooks.timeout, 10.0) + 1.0):
                await delivery.tried.wait()
        return _json(
            200,
            {
                "locationId": location_id,
                "installed": installed,
                "webhook": {
                    "type": delivery.event_type,
                    "url": delivery.url,
                    "webhookId": delivery.webhook_id,
                    "outcome": delivery.outcome,
                    "attempts": list(delivery.attempts),
                },
            },
        )
