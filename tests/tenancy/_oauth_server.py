"""A small HighLevel OAuth server on 127.0.0.1 that behaves as apps/oauth.json says, with
single-use refresh tokens: reusing one answers 400 invalid_grant and is counted.

It also serves GET /locations/{locationId} (a location's name, apps/locations.json) and
GET /check, a stand-in for any API call: 200 for a live access token, else HighLevel's 401
answer. Tokens are random and unique, so a test can look for them anywhere.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

CLIENT_ID = "app123-client"
CLIENT_SECRET = "s3cret-client"
APP_ID = "app123"
VERSION = "2021-07-28"


@dataclass
class Subject:
    """Whom a token speaks for: a location, or a company (agency)."""

    user_type: str  # "Location" or "Company"
    key: str  # location id or company id
    company_id: str


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    form: dict[str, str]
    query: dict[str, str]


@dataclass
class OAuthServer:
    ttl: float = 86_399.0
    codes: dict[str, Subject] = field(default_factory=dict)
    access: dict[str, tuple[Subject, float]] = field(default_factory=dict)  # token -> until
    refresh_tokens: dict[str, Subject] = field(default_factory=dict)
    spent: set[str] = field(default_factory=set)
    reuses: int = 0
    refreshes: int = 0
    # company id -> its locations where the app is installed, as (id, name)
    locations: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)
    issued: list[str] = field(default_factory=list)  # every token handed out, access and refresh
    fail_refresh: list[tuple[int, bool]] = field(default_factory=list)  # (status, acted first)
    # GET /locations/{id}: location id -> name (also the agencies' `locations`); a status to
    # answer instead; hold the answers until `release` is set (the server's stop sets it).
    location_names: dict[str, str] = field(default_factory=dict)
    fail_location_lookup: int | None = None
    hold_location_lookup: bool = False
    release: asyncio.Event = field(default_factory=asyncio.Event)
    url: str = ""

    # ------------------------------------------------------------------ test controls

    def code_for_location(self, location_id: str, company_id: str = "comp-1") -> str:
        code = "code-" + secrets.token_hex(8)
        self.codes[code] = Subject("Location", location_id, company_id)
        return code

    def code_for_company(self, company_id: str, locations: list[tuple[str, str]]) -> str:
        self.locations[company_id] = list(locations)
        code = "code-" + secrets.token_hex(8)
        self.codes[code] = Subject("Company", company_id, company_id)
        return code

    def revoke_refresh_tokens(self, key: str) -> None:
        for token, subject in list(self.refresh_tokens.items()):
            if subject.key == key:
                self.spent.add(token)

    def expire_access(self, key: str) -> None:
        for token, (subject, _until) in list(self.access.items()):
            if subject.key == key:
                self.access[token] = (subject, 0.0)

    def live(self, token: str, key: str | None = None) -> bool:
        entry = self.access.get(token)
        if entry is None or entry[1] <= time.time():
            return False
        return key is None or entry[0].key == key

    # ------------------------------------------------------------------ the app

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/oauth/token", self._token)
        app.router.add_get("/oauth/installedLocations", self._installed)
        app.router.add_post("/oauth/locationToken", self._location_token)
        app.router.add_get("/locations/{locationId}", self._location)
        app.router.add_get("/check", self._check)
        return app

    def _new_pair(self, subject: Subject, *, with_refresh: bool) -> dict[str, Any]:
        access = "at-" + secrets.token_hex(12)
        self.access[access] = (subject, time.time() + self.ttl)
        self.issued.append(access)
        body: dict[str, Any] = {
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": self.ttl,
            "scope": "conversations/message.write",
            "userId": "user-1",
            "companyId": subject.company_id,
        }
        if subject.user_type == "Location":
            body["locationId"] = subject.key
        if with_refresh:
            refresh = "rt-" + secrets.token_hex(12)
            self.refresh_tokens[refresh] = subject
            self.issued.append(refresh)
            body["refresh_token"] = refresh
            body["userType"] = subject.user_type
        if subject.user_type == "Company":
            body["approvedLocations"] = [x for x, _ in self.locations.get(subject.key, [])]
        return body

    async def _token(self, request: web.Request) -> web.Response:
        form = {k: str(v) for k, v in (await request.post()).items()}
        self._note(request, form)
        if request.content_type != "application/x-www-form-urlencoded":
            return web.json_response({"statusCode": 422, "message": ["form expected"]}, status=422)
        if form.get("client_id") != CLIENT_ID or form.get("client_secret") != CLIENT_SECRET:
            return web.json_response(
                {"error": "invalid_client", "error_description": "bad client"}, status=401
            )
        grant = form.get("grant_type")
        if grant == "authorization_code":
            subject = self.codes.pop(form.get("code", ""), None)
            if subject is None:
                return _invalid_grant("code is invalid or used")
            return web.json_response(self._new_pair(subject, with_refresh=True))
        if grant == "refresh_token":
            token = form.get("refresh_token", "")
            subject = self.refresh_tokens.get(token)
            if self.fail_refresh:
                status, acted = self.fail_refresh.pop(0)
                if acted and subject is not None and token not in self.spent:
                    self.spent.add(token)  # spent, and the new pair is lost on the way
                    self._new_pair(subject, with_refresh=True)
                return web.json_response({"message": "Internal Server Error"}, status=status)
            if token in self.spent:
                self.reuses += 1
                return _invalid_grant("refresh token already used")
            if subject is None:
                return _invalid_grant("unknown refresh token")
            if form.get("user_type") != subject.user_type:
                return web.json_response({"statusCode": 400, "message": "user_type"}, status=400)
            self.spent.add(token)
            self.refreshes += 1
            return web.json_response(self._new_pair(subject, with_refresh=True))
        return web.json_response({"statusCode": 400, "message": "grant_type"}, status=400)

    def _company(self, request: web.Request) -> Subject | None:
        header = request.headers.get("Authorization", "")
        token = header.removeprefix("Bearer ")
        if request.headers.get("Version") != VERSION or not self.live(token):
            return None
        subject = self.access[token][0]
        return subject if subject.user_type == "Company" else None

    async def _installed(self, request: web.Request) -> web.Response:
        self._note(request, {})
        subject = self._company(request)
        if subject is None:
            return _unauthorized()
        query = request.query
        if query.get("appId") != APP_ID or query.get("companyId") != subject.key:
            return web.json_response({"statusCode": 400, "message": "bad query"}, status=400)
        everything = self.locations.get(subject.key, [])
        if "locationId" in query:
            everything = [x for x in everything if x[0] == query["locationId"]]
        skip, limit = int(query.get("skip", "0")), int(query.get("limit", "20"))
        page = everything[skip : skip + limit]
        return web.json_response(
            {
                "locations": [
                    {"_id": lid, "name": name, "address": "1 Main St", "isInstalled": True}
                    for lid, name in page
                ],
                "count": len(everything),
            }
        )

    async def _location_token(self, request: web.Request) -> web.Response:
        form = {k: str(v) for k, v in (await request.post()).items()}
        self._note(request, form)
        subject = self._company(request)
        if subject is None:
            return _unauthorized()
        location_id = form.get("locationId", "")
        installed = {x for x, _ in self.locations.get(subject.key, [])}
        if form.get("companyId") != subject.key or location_id not in installed:
            return web.json_response({"statusCode": 400, "message": "not installed"}, status=400)
        body = self._new_pair(Subject("Location", location_id, subject.key), with_refresh=False)
        return web.json_response(body)

    async def _location(self, request: web.Request) -> web.Response:
        self._note(request, {})
        if self.hold_location_lookup:
            await self.release.wait()
        if self.fail_location_lookup is not None:
            status = self.fail_location_lookup
            return web.json_response({"statusCode": status, "message": "failed"}, status=status)
        if request.headers.get("Version") != VERSION:
            return web.json_response(
                {"statusCode": 400, "message": "version header was not found."}, status=400
            )
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if not self.live(token):
            return _unauthorized()
        subject = self.access[token][0]
        location_id = request.match_info["locationId"]
        names = dict(self.location_names)
        for company_id, pairs in self.locations.items():
            if subject.user_type == "Company" and company_id == subject.key:
                names.update(pairs)
        allowed = location_id == subject.key or subject.user_type == "Company"
        if not allowed:
            return web.json_response(
                {"statusCode": 403, "message": "The token does not have access to this location."},
                status=403,
            )
        if location_id not in names and subject.user_type == "Company":
            return web.json_response({"statusCode": 400, "message": "not found"}, status=400)
        location: dict[str, Any] = {"id": location_id, "companyId": subject.company_id}
        if location_id in names:
            location["name"] = names[location_id]
        return web.json_response({"location": location})

    async def _check(self, request: web.Request) -> web.Response:
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if not self.live(token, request.query.get("locationId")):
            return _unauthorized()
        return web.json_response({"ok": True})

    def _note(self, request: web.Request, form: dict[str, str]) -> None:
        self.seen.append(
            Seen(request.method, request.path, dict(request.headers), form, dict(request.query))
        )


def _invalid_grant(description: str) -> web.Response:
    return web.json_response(
        {"error": "invalid_grant", "error_description": description}, status=400
    )


def _unauthorized() -> web.Response:
    return web.json_response(
        {"statusCode": 401, "message": "Invalid JWT", "error": "Unauthorized"}, status=401
    )


@asynccontextmanager
async def running(server: OAuthServer) -> AsyncIterator[OAuthServer]:
    runner = web.AppRunner(server.app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    server.url = f"http://127.0.0.1:{port}"
    try:
        yield server
    finally:
        server.release.set()  # held answers go out, so the runner's cleanup does not wait
        await runner.cleanup()
