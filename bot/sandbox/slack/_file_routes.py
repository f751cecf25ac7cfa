"""The simulator's file endpoints that are not Web API methods: private downloads, thumbnails,
the upload URL files.getUploadURLExternal hands out, and the sign-in page Slack shows instead of
a file to a request without the workspace's token.

Downloads (docs.slack.dev, "Working with files"): ``url_private``/``url_private_download`` need
``Authorization: Bearer <bot token>`` of the file's workspace, with ``files:read``. Without it
Slack does not answer 401: it redirects (302) to its sign-in page, which answers 200 with HTML,
so a client that follows redirects gets a web page instead of the file. The sandbox does the
same for no token, an unknown, revoked or expired token, another workspace's token, and a token
without ``files:read``. A known workspace's missing or deleted file answers 404.

Uploads: slack_sdk's files_upload_v2 POSTs the raw bytes (no token: the URL is the ticket);
curl's ``-F filename=@x`` sends multipart, also taken. Slack answers 200 ``OK - <bytes>``.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from typing import TYPE_CHECKING
from urllib.parse import quote

from aiohttp import BodyPartReader, web

from bot.sandbox.slack._faults import Fault
from bot.sandbox.slack._files import FILE_DOWNLOAD, FILE_UPLOAD, SlackFile
from bot.sandbox.slack._requests import Transport
from bot.sandbox.slack._workspace import ApiFailure, SlackWorkspace

if TYPE_CHECKING:
    from bot.sandbox.slack.simulator import SlackSimulator

_SIGNIN_PAGE = (
    "<!DOCTYPE html><html><head><title>Sign in | Slack</title></head>"
    "<body><h1>Sign in to {team}</h1><p>Continue to {redir}</p></body></html>"
)


class FileRoutes:
    """Registers and answers the file endpoints of one simulator."""

    def __init__(self, sim: SlackSimulator) -> None:
        self._sim = sim

    def add_to(self, app: web.Application) -> None:
        app.router.add_get("/files-pri/{key}/download/{name}", self._download)
        app.router.add_get("/files-pri/{key}/{name}", self._download)
        app.router.add_get("/files-tmb/{key}/{name}", self._thumbnail)
        app.router.add_get("/files/{user}/{file_id}/{name}", self._signin)
        app.router.add_get("/signin", self._signin)
        app.router.add_post("/upload/v1/{ticket}", self._upload)

    # ------------------------------------------------------------------ downloads

    async def _download(self, request: web.Request) -> web.StreamResponse:
        team_id, _, file_id = request.match_info["key"].partition("-")
        return await self._serve(request, team_id, file_id)

    async def _thumbnail(self, request: web.Request) -> web.StreamResponse:
        # key: <team>-<file>-<thumb key>; a thumbnail is served as the image itself.
        team_id, _, rest = request.match_info["key"].partition("-")
        return await self._serve(request, team_id, rest.split("-")[0])

    async def _serve(self, request: web.Request, team_id: str, file_id: str) -> web.StreamResponse:
        fault = await _take_fault(self._sim, FILE_DOWNLOAD)
        args = {"file": file_id}
        workspace = self._workspace_of(request)
        if fault is not None and fault.status:
            self._record(FILE_DOWNLOAD, args, fault.status, fault.error, team_id)
            return web.Response(status=fault.status, text=fault.error or "error")
        if workspace is None or workspace.team_id != team_id:
            self._record(FILE_DOWNLOAD, args, 302, "signin_redirect", team_id)
            path = quote(request.path, safe="")
            raise web.HTTPFound(f"{self._sim.base_url}signin?redir={path}")
        file = workspace.downloadable(file_id)
        if file is None:
            self._record(FILE_DOWNLOAD, args, 404, "file_not_found", team_id)
            return web.Response(status=404, text="Not Found", content_type="text/html")
        self._record(FILE_DOWNLOAD, args, 200, None, team_id)
        return _file_response(file, attachment="/download/" in request.path)

    def _workspace_of(self, request: web.Request) -> SlackWorkspace | None:
        """The workspace whose bot token authorizes this download, if any."""
        authorization = request.headers.get("Authorization", "")
        if not authorization.lower().startswith("bearer "):
            return None
        token = authorization[7:].strip()
        if not token or token == self._sim.app_token:
            return None
        try:
            workspace = self._sim.installs.resolve(token)
        except ApiFailure:
            return None
        return workspace if "files:read" in self._sim.granted_scopes else None

    async def _signin(self, request: web.Request) -> web.Response:
        page = _SIGNIN_PAGE.format(
            team=html.escape(self._sim.team_name), redir=html.escape(request.query.get("redir", ""))
        )
        return web.Response(text=page, content_type="text/html")

    # ------------------------------------------------------------------ uploads

    async def _upload(self, request: web.Request) -> web.Response:
        ticket = request.match_info["ticket"]
        fault = await _take_fault(self._sim, FILE_UPLOAD)
        owner = next(
            (w for w in self._sim.workspaces if w.file_pending_upload(ticket) is not None), None
        )
        pending = owner.file_pending_upload(ticket) if owner is not None else None
        args: dict[str, str | None] = {"file": pending.id if pending is not None else None}
        team_id = owner.team_id if owner is not None else None
        if fault is not None and fault.status and not fault.take_effect:
            self._record(FILE_UPLOAD, args, fault.status, fault.error, team_id)
            return web.Response(status=fault.status, text=fault.error or "error")
        data = await _upload_body(request)
        accepted = owner.accept_upload(ticket, data) if owner is not None else None
        if accepted is None:
            self._record(FILE_UPLOAD, args, 404, "upload_not_found", team_id)
            return web.Response(status=404, text="Not Found")
        args["bytes"] = str(len(data))
        if fault is not None and fault.status:
            self._record(FILE_UPLOAD, args, fault.status, fault.error, team_id)
            return web.Response(status=fault.status, text=fault.error or "error")
        self._record(FILE_UPLOAD, args, 200, None, team_id)
        return web.Response(text=f"OK - {len(data)}")

    def _record(
        self,
        method: str,
        args: Mapping[str, str | None],
        status: int,
        error: str | None,
        team_id: str | None,
    ) -> None:
        body = {"ok": status == 200, "error": error}
        transport: Transport = "raw" if method == FILE_UPLOAD else "query"
        self._sim._record(method, dict(args), transport, status, body, team_id=team_id)


async def _take_fault(sim: SlackSimulator, method: str) -> Fault | None:
    fault = sim.faults.take(method)
    if fault is not None:
        await fault.wait()
    return fault


async def _upload_body(request: web.Request) -> bytes:
    """The file's bytes: the raw body, or the first file part of a multipart form."""
    if request.content_type != "multipart/form-data":
        return await request.read()
    reader = await request.multipart()
    first: bytes | None = None
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader):
            continue
        data = bytes(await part.read(decode=False))
        if part.filename is not None:
            return data
        first = data if first is None else first
    return first or b""


def _file_response(file: SlackFile, *, attachment: bool) -> web.Response:
    headers = {"Cache-Control": "private, no-store"}
    if attachment:
        headers["Content-Disposition"] = f"attachment; filename*=UTF-8''{quote(file.name)}"
    kind, _, charset = file.mimetype.partition(";")
    response = web.Response(body=file.data, content_type=kind.strip(), headers=headers)
    if charset.strip().startswith("charset="):
        response.charset = charset.strip().removeprefix("charset=")
    return response
