"""A fake Slack Web API served over real HTTP, for tests, ``ghl-bridge demo`` and dry runs.

Point slack_sdk at it with ``AsyncWebClient(token=..., base_url=sim.api_url)``. It answers
``GET``/``POST /api/<method>`` the way slack.com does: the token in ``Authorization: Bearer``
(or a ``token`` form/query field), arguments in the query string, a form body or a JSON body,
``blocks``/``view`` either as JSON or as JSON strings, and ``{"ok": false, "error": ...}``
answers with HTTP 200 except for rate limits (429 + ``Retry-After``) and injected faults.
``POST /response/<id>`` is the sink for ``response_url`` posts (Bolt's ``respond()``).

Several workspaces (``add_workspace``), each with its own bot token, users and channels; a token
only reaches its own workspace. OAuth v2: ``GET /oauth/v2/authorize`` (``authorize_url``) answers
302 to the redirect_uri with a code, ``oauth.v2.access`` exchanges it (and refresh tokens, with
``token_rotation``), ``auth.revoke`` revokes the calling token, ``uninstall()`` revokes a
workspace's tokens and POSTs signed ``app_uninstalled``/``tokens_revoked`` to ``events_url``.
See README.md here.
"""

from __future__ import annotations

import copy
import json
import logging
import secrets
import time
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Any, Self

from aiohttp import WSCloseCode, WSMsgType, web

from bot.sandbox.slack._faults import Fault, SlackFaults
from bot.sandbox.slack._file_routes import FileRoutes
from bot.sandbox.slack._files import FILE_METHOD_SCOPES, MAX_UPLOAD_BYTES
from bot.sandbox.slack._installs import DEFAULT_TOKEN_TTL_SECONDS, Installs
from bot.sandbox.slack._models import JsonDict, RecordedCall
from bot.sandbox.slack._oauth import InstallSide
from bot.sandbox.slack._requests import BadRequest, Transport, decode_json_args, read_arguments
from bot.sandbox.slack._workspace import ApiFailure, SlackWorkspace

logger = logging.getLogger(__name__)

SOCKET_OPEN_METHOD = "apps.connections.open"
OAUTH_ACCESS_METHOD = "oauth.v2.access"
AUTH_REVOKE_METHOD = "auth.revoke"
# Credentials never kept in `calls`.
_SECRET_ARGS = ("client_secret", "refresh_token", "code")
# A Socket Mode URL works once, and not for long: Slack does not document how long, so the
# sandbox takes 30 s (the stricter reading).
SOCKET_TICKET_TTL_SECONDS = 30.0

# What the sandbox bot token is granted unless a test says otherwise: every bot scope
# ghl-bridge could ask for, so a complete manifest.yml finds nothing missing.
DEFAULT_GRANTED_SCOPES: tuple[str, ...] = (
    "app_mentions:read",
    "channels:history",
    "channels:join",
    "channels:read",
    "chat:write",
    "chat:write.customize",
    "chat:write.public",
    "commands",
    "files:read",
    "files:write",
    "groups:history",
    "groups:read",
    "im:history",
    "im:read",
    "im:write",
    "mpim:history",
    "mpim:read",
    "reactions:read",
    "reactions:write",
    "team:read",
    "users:read",
    "users:read.email",
)


class SlackSimulator(InstallSide, SlackWorkspace):
    """The sandbox Slack: workspace state, the Web API over HTTP, and test helpers.

    Seed it with ``add_user``/``add_channel`` (people in ``admins`` are workspace admins, as
    ``users.info`` says); read it back with ``channel_messages``,
    ``thread``, ``ephemerals``, ``open_views``, ``response_url_posts``, ``calls``.
    The simulator is its own first workspace; ``add_workspace`` adds more.
    """

    def __init__(
        self,
        *,
        bot_token: str = "xoxb-sandbox-token",  # noqa: S107  (a fake for the sandbox)
        team_id: str = "T0SANDBOX",
        team_domain: str = "sandbox",
        bot_user_id: str = "U0BOT",
        post_rate_per_second: float = 1.0,
        post_burst: int = 5,
        trigger_ttl_seconds: float = 3.0,
        bot_id: str = "B0BOT",
        app_id: str = "A0SANDBOX",
        bot_name: str = "ghl-bridge",
        granted_scopes: Iterable[str] = DEFAULT_GRANTED_SCOPES,
        app_token: str = "xapp-1-A0SANDBOX-1-sandbox",  # noqa: S107  (a fake for the sandbox)
        admins: Iterable[str] = (),
        team_name: str | None = None,
        client_id: str = "0000000000.0000000000",
        client_secret: str = "sandbox-client-secret",  # noqa: S107  (a fake for the sandbox)
        signing_secret: str = "sandbox-signing-secret",  # noqa: S107  (a fake for the sandbox)
        verification_token: str = "sandbox-verification-token",  # noqa: S107  (a fake)
        token_rotation: bool = False,
        token_ttl: float = DEFAULT_TOKEN_TTL_SECONDS,
        events_url: str | None = None,
        oauth_redirect_uri: str | None = None,
    ) -> None:
        super().__init__(
            team_id=team_id,
            team_domain=team_domain,
            bot_user_id=bot_user_id,
            bot_id=bot_id,
            app_id=app_id,
            bot_name=bot_name,
            post_rate_per_second=post_rate_per_second,
            post_burst=post_burst,
            trigger_ttl_seconds=trigger_ttl_seconds,
            admins=admins,
            team_name=team_name,
        )
        self._bot_token = bot_token
        # Sent back in ``x-oauth-scopes`` on every authenticated call, as Slack does.
        self.granted_scopes: tuple[str, ...] = tuple(granted_scopes)
        self.signing_secret = signing_secret
        self.verification_token = verification_token
        # Where uninstall() POSTs its Events API callbacks (the app's /slack/events).
        self.events_url = events_url
        # The app's configured Redirect URL: where authorize sends people when the install
        # link names no redirect_uri.
        self.oauth_redirect_uri = oauth_redirect_uri
        self.installs = Installs(
            client_id=client_id,
            client_secret=client_secret,
            token_rotation=token_rotation,
            token_ttl=token_ttl,
            default_scope=",".join(self.granted_scopes),
        )
        self.installs.add(self, bot_token)
        self.faults = SlackFaults()
        self.calls: list[RecordedCall] = []
        self._runner: web.AppRunner | None = None
        self._base_url: str | None = None
        self._init_socket_mode(app_token)

    # ------------------------------------------------------------------ lifecycle

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve on ``host:port`` (0 = any free port); returns ``api_url``."""
        if self._runner is not None:
            raise RuntimeError("the Slack simulator is already running")
        # Uploads carry a whole file (up to Slack's 1 GB), not a 1 MB form.
        app = web.Application(client_max_size=MAX_UPLOAD_BYTES)
        app.router.add_route("GET", "/api/{method}", self._handle_api)
        app.router.add_route("POST", "/api/{method}", self._handle_api)
        app.router.add_post("/response/{url_id}", self._handle_response_url)
        app.router.add_get("/link/", self._handle_socket)
        app.router.add_get("/oauth/v2/authorize", self._handle_authorize)
        FileRoutes(self).add_to(app)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound_host, bound_port = runner.addresses[0][:2]
        self._runner = runner
        self._base_url = f"http://{bound_host}:{bound_port}/"
        for workspace in self.workspaces:
            workspace.file_base_url = self._base_url
        logger.debug("Slack simulator listening on %s", self._base_url)
        return self.api_url

    async def stop(self) -> None:
        await self.drop_sockets()  # else the server would wait for them to end
        if self._runner is not None:
            await self._runner.cleanup()
        self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def base_url(self) -> str:
        """``http://host:port/`` of the running simulator."""
        if self._base_url is None:
            raise RuntimeError("start() the Slack simulator first")
        return self._base_url

    @property
    def api_url(self) -> str:
        """The ``base_url`` to give slack_sdk (ends in ``/api/``)."""
        return f"{self.base_url}api/"

    @property
    def bot_token(self) -> str:
        return self._bot_token

    def new_response_url(
        self,
        *,
        channel_id: str | None = None,
        user_id: str | None = None,
        message_ts: str | None = None,
        team_id: str | None = None,
    ) -> str:
        """A ``response_url`` for an interaction in ``channel_id`` by ``user_id``.

        ``message_ts`` names the message the interaction came from, which
        ``replace_original``/``delete_original`` act on; ``team_id`` the workspace (default
        the simulator's own).
        """
        workspace = self.workspace(team_id) if team_id is not None else self
        return workspace._register_response_url(
            self.base_url, channel_id=channel_id, user_id=user_id, message_ts=message_ts
        )

    def calls_to(self, method: str) -> list[RecordedCall]:
        return [call for call in self.calls if call.method == method]

    # ------------------------------------------------------------------ HTTP

    async def _handle_api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        transport: Transport = "query"
        args: JsonDict = {}
        headers: dict[str, str] = {}
        team_id: str | None = None
        fault = self.faults.take(method)
        if fault is not None:
            await fault.wait()
        try:
            args, transport, token = await read_arguments(request)
            if fault is not None and fault.status and not fault.take_effect:
                return self._fault_response(method, args, transport, fault)
            if method == OAUTH_ACCESS_METHOD:
                # Authenticated by client id and secret (HTTP Basic or form), not a token.
                body = self.installs.oauth_v2_access(args, request.headers.get("Authorization"))
                # The workspace the token is bound to (an org-wide install answers team null).
                status, team_id = 200, self.installs.tokens[body["access_token"]].team_id
            else:
                workspace = self._authenticate(method, token)
                team_id = workspace.team_id
                decode_json_args(args)
                if method == SOCKET_OPEN_METHOD:
                    headers["x-oauth-scopes"] = "connections:write"
                    status, body = 200, self._open_socket_url()
                elif method == AUTH_REVOKE_METHOD and token is not None:
                    status, body = 200, self._auth_revoke(token, args)
                else:
                    headers["x-oauth-scopes"] = ",".join(self.granted_scopes)
                    self._require_scope(method)
                    status, body = 200, workspace.call_method(method, args)
                    if method == "auth.test":
                        body = self._identity_of(token, body)
        except BadRequest as bad:
            status, body = 200, {"ok": False, "error": bad.error}
        except ApiFailure as failure:
            status, body = failure.status, failure.body()
            headers.update(failure.headers)
        if fault is not None and fault.status and fault.take_effect:
            return self._fault_response(method, args, transport, fault)
        self._record(method, args, transport, status, body, team_id=team_id)
        logger.debug("Slack simulator %s -> %s", method, body.get("error") or "ok")
        return web.json_response(body, status=status, headers=headers)

    def _authenticate(self, method: str, token: str | None) -> SlackWorkspace:
        """The workspace the token belongs to (a bot token reaches only its own)."""
        if token is None:
            raise ApiFailure("not_authed")
        # apps.connections.open takes the app-level token only; every other method refuses it.
        if method == SOCKET_OPEN_METHOD:
            if token in self.installs.tokens:
                raise ApiFailure("not_allowed_token_type")
            if token != self._app_token:
                raise ApiFailure("invalid_auth")
            return self
        if token == self._app_token:
            raise ApiFailure("not_allowed_token_type")
        return self.installs.resolve(token)

    def _require_scope(self, method: str) -> None:
        # Only the file methods check: the sandbox grants every other scope the bridge uses.
        needed = FILE_METHOD_SCOPES.get(method)
        if needed is not None and needed not in self.granted_scopes:
            provided = ",".join(self.granted_scopes)
            raise ApiFailure("missing_scope", extra={"needed": needed, "provided": provided})

    def _fault_response(
        self, method: str, args: JsonDict, transport: Transport, fault: Fault
    ) -> web.Response:
        body: JsonDict = {"ok": False, "error": fault.error}
        headers: dict[str, str] = {}
        if fault.status == 429:
            headers["Retry-After"] = str(max(1, fault.retry_after or 1))
        elif fault.retry_after is not None:
            headers["Retry-After"] = str(fault.retry_after)
        self._record(method, args, transport, fault.status, body)
        return web.json_response(body, status=fault.status, headers=headers)

    def _record(
        self,
        method: str,
        args: JsonDict,
        transport: Transport,
        status: int,
        body: Mapping[str, Any],
        *,
        team_id: str | None = None,
    ) -> None:
        ok = bool(body.get("ok")) and status == 200
        kept = {k: v for k, v in args.items() if k not in _SECRET_ARGS}
        self.calls.append(
            RecordedCall(
                method=method,
                args=copy.deepcopy(kept),
                team_id=team_id,
                at=time.time(),
                ok=ok,
                error=None if ok else str(body.get("error", f"http_{status}")),
                http_status=status,
                transport=transport,
            )
        )

    async def _handle_response_url(self, request: web.Request) -> web.Response:
        raw = await request.text()
        body: Any
        if request.content_type == "application/x-www-form-urlencoded":
            form = await request.post()
            payload = form.get("payload")
            raw = payload if isinstance(payload, str) else ""
        try:
            body = json.loads(raw)
        except ValueError:
            body = raw
        url_id = request.match_info["url_id"]
        # response_url ids are unique across workspaces: the one that issued it answers.
        owner = next((w for w in self.workspaces if w.issued_response_url(url_id)), self)
        status, answer = owner._accept_response_url_post(url_id, body)
        return web.Response(status=status, text=answer)

    # ------------------------------------------------------------------ Socket Mode
    # apps.connections.open hands out a ws:// URL to /link/ on this server, as Slack hands out
    # wss://wss-primary.slack.com/link/?ticket=...; the websocket says hello, carries envelopes
    # pushed with `push_envelope`, and collects what the app sends back in `socket_acks`.

    def _init_socket_mode(self, app_token: str) -> None:
        self._app_token = app_token
        # With False, a new connection waits for `send_hello()`: a test can look at the app
        # between "connected" and "Slack said hello".
        self.socket_hello = True
        self.socket_acks: list[JsonDict] = []
        self._socket_tickets: dict[str, float] = {}
        self._sockets: list[web.WebSocketResponse] = []
        self._awaiting_hello: list[web.WebSocketResponse] = []

    @property
    def app_token(self) -> str:
        """The app-level token (xapp-...) that `apps.connections.open` accepts."""
        return self._app_token

    @property
    def socket_connections(self) -> int:
        """How many Socket Mode websockets are open now."""
        return len(self._sockets)

    @property
    def sockets_awaiting_hello(self) -> int:
        """Open websockets still waiting for `send_hello()` (with `socket_hello` False)."""
        return sum(1 for socket in self._awaiting_hello if not socket.closed)

    def _open_socket_url(self) -> JsonDict:
        ticket = secrets.token_hex(16)
        self._socket_tickets[ticket] = time.time() + SOCKET_TICKET_TTL_SECONDS
        host = self.base_url.removeprefix("http://").rstrip("/")
        return {"ok": True, "url": f"ws://{host}/link/?ticket={ticket}&app_id={self.app_id}"}

    async def _handle_socket(self, request: web.Request) -> web.StreamResponse:
        expires = self._socket_tickets.pop(request.query.get("ticket", ""), None)
        if expires is None or expires < time.time():
            # What Slack answers an unknown or used ticket is undocumented; any refusal of the
            # upgrade makes the app ask for a new URL.
            return web.json_response({"ok": False, "error": "invalid_ticket"}, status=401)
        socket = web.WebSocketResponse(autoping=True)
        await socket.prepare(request)
        self._sockets.append(socket)
        try:
            if self.socket_hello:
                await self._say_hello(socket)
            else:
                self._awaiting_hello.append(socket)
            async for message in socket:
                if message.type != WSMsgType.TEXT:
                    continue
                try:
                    answer = json.loads(message.data)
                except ValueError:
                    continue
                if isinstance(answer, dict):
                    self.socket_acks.append(answer)
        finally:
            self._sockets.remove(socket)
            if socket in self._awaiting_hello:
                self._awaiting_hello.remove(socket)
        return socket

    async def _say_hello(self, socket: web.WebSocketResponse) -> None:
        await socket.send_json(
            {
                "type": "hello",
                "num_connections": len(self._sockets),
                "debug_info": {"host": "sandbox", "approximate_connection_time": 18060},
                "connection_info": {"app_id": self.app_id},
            }
        )

    async def send_hello(self) -> int:
        """Say hello on every connection still waiting for it; returns how many."""
        waiting, self._awaiting_hello = self._awaiting_hello, []
        for socket in waiting:
            if not socket.closed:
                await self._say_hello(socket)
        return len(waiting)

    async def push_envelope(
        self,
        payload: JsonDict,
        *,
        envelope_type: str = "events_api",
        accepts_response_payload: bool = False,
    ) -> str:
        """Deliver one envelope on the newest connection; returns its envelope_id."""
        if not self._sockets:
            raise RuntimeError("no Socket Mode connection is open")
        envelope_id = secrets.token_hex(8)
        await self._sockets[-1].send_json(
            {
                "envelope_id": envelope_id,
                "type": envelope_type,
                "payload": payload,
                "accepts_response_payload": accepts_response_payload,
                "retry_attempt": 0,
                "retry_reason": "",
            }
        )
        return envelope_id

    async def ask_to_reconnect(self, reason: str = "refresh_requested") -> int:
        """Send Slack's `disconnect` message (it asks the app for a new connection, as Slack
        does every few hours) on every open connection; returns how many."""
        open_now = list(self._sockets)
        for socket in open_now:
            await socket.send_json(
                {"type": "disconnect", "reason": reason, "debug_info": {"host": "sandbox"}}
            )
        return len(open_now)

    async def drop_sockets(self) -> int:
        """Close every Socket Mode connection from Slack's side; returns how many."""
        open_now = list(self._sockets)
        for socket in open_now:
            await socket.close(code=WSCloseCode.GOING_AWAY)
        return len(open_now)
