"""How the sandbox Slack reads a Web API request: arguments from the query string, a form or a
JSON body, the token from ``Authorization: Bearer`` or a ``token`` field, as slack.com does."""

from __future__ import annotations

import json
from typing import Literal

from aiohttp import web

from bot.sandbox.slack._models import JsonDict
from bot.sandbox.slack._workspace import ApiFailure

# Arguments Slack accepts as JSON-encoded strings in form or query posts.
_JSON_ARGS = frozenset({"blocks", "attachments", "view", "metadata"})
_JSON_ARG_ERRORS = {"blocks": "invalid_blocks_format", "attachments": "invalid_attachments"}

# "raw": bytes POSTed to a file upload URL (not a Web API method).
Transport = Literal["json", "form", "query", "raw"]


class BadRequest(Exception):
    def __init__(self, error: str) -> None:
        super().__init__(error)
        self.error = error


async def read_arguments(
    request: web.Request,
) -> tuple[JsonDict, Transport, str | None]:
    """Merged arguments, how they came, and the token (header first, then form/query)."""
    args: JsonDict = dict(request.query)
    transport: Transport = "query"
    header_token: str | None = None
    authorization = request.headers.get("Authorization", "")
    if authorization.lower().startswith("bearer "):
        header_token = authorization[7:].strip() or None
    if request.method == "POST" and request.can_read_body:
        content_type = request.content_type
        if content_type == "application/json":
            try:
                body = json.loads(await request.text())
            except ValueError as exc:
                raise BadRequest("invalid_json") from exc
            if not isinstance(body, dict):
                raise BadRequest("invalid_json")
            # Slack ignores a token inside a JSON body: JSON callers must use the header.
            body.pop("token", None)
            args.update(body)
            transport = "json"
        elif content_type in {"application/x-www-form-urlencoded", "multipart/form-data"}:
            form = await request.post()
            args.update({k: v for k, v in form.items() if isinstance(v, str)})
            transport = "form"
        else:
            raise BadRequest("invalid_post_type")
    token = header_token
    if token is None and transport != "json":
        form_token = args.get("token")
        token = str(form_token) if form_token else None
    args.pop("token", None)
    return args, transport, token


def decode_json_args(args: JsonDict) -> None:
    for name in _JSON_ARGS & args.keys():
        value = args[name]
        if isinstance(value, str):
            try:
                args[name] = json.loads(value)
            except ValueError as exc:
                raise ApiFailure(_JSON_ARG_ERRORS.get(name, "invalid_arguments")) from exc
