"""GET /locations/{locationId} (apps/locations.json, get-location): a sub-account's details."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from . import _spec
from ._errors import ApiError
from ._oauth_routes import PRINCIPAL_KEY

if TYPE_CHECKING:
    from ._simulator import HighLevelSimulator

__all__ = ["LOCATIONS_SCOPE", "LOCATION_PATH", "LocationRoutes"]

LOCATION_PATH = "/locations/{locationId}"
LOCATIONS_SCOPE = "locations.readonly"
# HighLevel's answer to an OAuth token whose app was not granted the route's scope.
_NO_SCOPE = "The token is not authorized for this scope."


class LocationRoutes:
    def __init__(self, sim: HighLevelSimulator) -> None:
        self.sim = sim

    def register(self, router: web.UrlDispatcher) -> None:
        router.add_get(LOCATION_PATH, self.get_location)

    async def get_location(self, request: web.Request) -> web.Response:
        """Location-Access (the location's own token) or Agency-Access (its company's token)."""
        sim = self.sim
        query = _spec.coerce_query(_spec.LOCATIONS, "GET", LOCATION_PATH, dict(request.query))
        errors = _spec.query_errors(
            _spec.LOCATIONS, "GET", LOCATION_PATH, query, strict=sim.strict_unknown_fields
        )
        if errors:
            raise ApiError.unprocessable(errors)
        token = request[PRINCIPAL_KEY]
        # A PIT's scopes are picked in HighLevel's settings, not recorded here: only OAuth
        # tokens carry the scopes their install granted.
        if token.kind == "access" and LOCATIONS_SCOPE not in token.scope.split():
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
        return web.json_response({"location": location.to_api(sim.company_id)})
