"""GET /locations/{locationId} (apps/locations.json, get-location): a sub-account's details;
GET /locations/{locationId}/templates (GET-all-or-email-sms-templates): its templates."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from . import _spec
from ._errors import ApiError
from ._oauth_routes import PRINCIPAL_KEY

if TYPE_CHECKING:
    from ._locations import SimLocation
    from ._simulator import HighLevelSimulator

__all__ = [
    "LOCATIONS_SCOPE",
    "LOCATION_PATH",
    "TEMPLATES_PATH",
    "TEMPLATES_SCOPE",
    "LocationRoutes",
]

LOCATION_PATH = "/locations/{locationId}"
LOCATIONS_SCOPE = "locations.readonly"
TEMPLATES_PATH = "/locations/{locationId}/templates"
TEMPLATES_SCOPE = "locations/templates.readonly"
# HighLevel's answer to an OAuth token whose app was not granted the route's scope.
_NO_SCOPE = "The token is not authorized for this scope."


class LocationRoutes:
    def __init__(self, sim: HighLevelSimulator) -> None:
        self.sim = sim

    def register(self, router: web.UrlDispatcher) -> None:
        router.add_get(LOCATION_PATH, self.get_location)
        router.add_get(TEMPLATES_PATH, self.list_templates)

    async def get_location(self, request: web.Request) -> web.Response:
        """Location-Access (the location's own token) or Agency-Access (its company's token)."""
        self._query(request, LOCATION_PATH)
        location = self._authorize(request, LOCATIONS_SCOPE)
        return web.json_response({"location": location.to_api(self.sim.company_id)})

    async def list_templates(self, request: web.Request) -> web.Response:
        """GET /locations/{locationId}/templates: ``{"templates": [...], "totalCount": n}``.

        ``originId`` is required (422 without it, as the spec declares); ``type`` filters;
        ``skip`` (an offset) and ``limit`` (default 25) page; ``deleted=true`` lists deleted
        templates, of which the sandbox has none.
        """
        query = self._query(request, TEMPLATES_PATH)
        location = self._authorize(request, TEMPLATES_SCOPE)
        errors = [
            f"{name} must be a number string"
            for name in ("skip", "limit")
            if name in query and not str(query[name]).isdigit()
        ]
        if errors:
            raise ApiError.unprocessable(errors)
        skip, limit = int(query.get("skip", 0)), int(query.get("limit", 25))
        kind = query.get("type")
        found = [
            template.to_api()
            for template in self.sim.templates_of(location.id)
            if kind is None or template.kind == kind
        ]
        if query.get("deleted") is True:
            found = []
        page = found[skip : skip + limit]
        return web.json_response({"templates": page, "totalCount": len(found)})

    def _query(self, request: web.Request, path: str) -> dict[str, Any]:
        query = _spec.coerce_query(_spec.LOCATIONS, "GET", path, dict(request.query))
        errors = _spec.query_errors(
            _spec.LOCATIONS, "GET", path, query, strict=self.sim.strict_unknown_fields
        )
        if errors:
            raise ApiError.unprocessable(errors)
        return query

    def _authorize(self, request: web.Request, scope: str) -> SimLocation:
        """The path's location, if the token may read it with ``scope`` (else 401/403/400)."""
        sim = self.sim
        token = request[PRINCIPAL_KEY]
        # A PIT's scopes are picked in HighLevel's settings, not recorded here: only OAuth
        # tokens carry the scopes their install granted.
        if token.kind == "access" and scope not in token.scope.split():
            raise ApiError.unauthorized(_NO_SCOPE)
        location_id = request.match_info["locationId"]
        if token.user_type == "Company":
            if token.company_id != sim.company_id:
                raise ApiError.forbidden_location()
        elif token.location_id != location_id:
            raise ApiError.forbidden_location()  # also for an id that does not exist
        location = sim.locations.get(location_id)
        if location is None:
            raise ApiError.bad_request("Location not found")
        return location
