"""The simulator's aiohttp app: gateway checks (Version, auth, rate limit, faults) and endpoints."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from aiohttp import web

from . import _spec
from ._errors import ApiError
from ._faults import FaultDecision, decide
from ._location_routes import LocationRoutes
from ._models import CHANNELS, new_id
from ._oauth_routes import PRINCIPAL_KEY, PUBLIC_OAUTH_PATHS, RECORD_KEY, OAuthRoutes
from ._search import SEARCH_FIELDS, filter_errors, group_holds, query_matches, sort_key
from ._simulator import AmbiguousCustomer, RequestRecord, Upload, trace_id

if TYPE_CHECKING:
    from ._simulator import HighLevelSimulator

__all__ = ["ACCEPTED_VERSIONS", "build_app"]

# The spec declares 2021-04-15 (conversations) and 2021-07-28 (contacts); the server accepts
# every published value on every established path. The TS SDK sends 2023-02-21, the Python SDK v3.
ACCEPTED_VERSIONS = frozenset({"2021-04-15", "2021-07-28", "2023-02-21", "v3"})

# "The allowed file types are: JPG, JPEG, PNG, MP4, MPEG, ZIP, RAR, PDF, DOC, DOCX, TXT, MP3,
# WAV" (upload-file-attachments); VCF works too (highlevel-api-docs issue 233).
UPLOAD_EXTENSIONS = frozenset(
    {
        "jpg",
        "jpeg",
        "png",
        "mp4",
        "mpeg",
        "zip",
        "rar",
        "pdf",
        "doc",
        "docx",
        "txt",
        "mp3",
        "wav",
        "vcf",
    }
)
FILES_PREFIX = "/sandbox-files/"
# The sandbox's own routes, for a person driving a dry run: not part of HighLevel's API.
CONTROL_PREFIX = "/_sandbox/"
CUSTOMER_REPLY_PATH = CONTROL_PREFIX + "customers/{customer}/reply"
_REPLY_FIELDS = ("body", "channel", "subject")
SEND_PATH = "/conversations/messages"
CONV = _spec.CONVERSATIONS
CONT = _spec.CONTACTS

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def build_app(sim: HighLevelSimulator) -> web.Application:
    oauth = OAuthRoutes(sim)
    api = _Api(sim, oauth)
    # Room for one over-limit file, so it reaches our 413 instead of aiohttp's plain-text one.
    app = web.Application(
        middlewares=[api.gateway], client_max_size=sim.upload_max_bytes * 2 + 1024 * 1024
    )

    async def start_background(_app: web.Application) -> None:
        await sim.start_background()

    async def stop_background(_app: web.Application) -> None:
        await sim.shutdown_background()

    app.on_startup.append(start_background)
    app.on_cleanup.append(stop_background)
    router = app.router
    # Fixed paths before parameterised ones: aiohttp matches in registration order.
    router.add_post(SEND_PATH, api.send_message)
    router.add_post("/conversations/messages/upload", api.upload)
    router.add_get("/conversations/search", api.search_conversations)
    router.add_get("/conversations/messages/email/{id}", api.get_email)
    router.add_delete("/conversations/messages/email/{emailMessageId}/schedule", api.cancel_email)
    router.add_delete("/conversations/messages/{messageId}/schedule", api.cancel_message)
    router.add_get("/conversations/messages/{id}", api.get_message)
    router.add_get("/conversations/{conversationId}/messages", api.list_messages)
    router.add_get("/conversations/{conversationId}", api.get_conversation)
    router.add_post("/contacts/search", api.search_contacts)
    router.add_get("/contacts/search/duplicate", api.duplicate_contact)
    router.add_post("/contacts/upsert", api.upsert_contact)
    router.add_get("/contacts/{contactId}", api.get_contact)
    router.add_get(FILES_PREFIX + "{uploadId}/{filename}", api.download)
    router.add_get(CONTROL_PREFIX + "customers", api.list_customers)
    router.add_post(CUSTOMER_REPLY_PATH, api.make_customer_reply)
    oauth.register(router)
    LocationRoutes(sim).register(router)
    return app


def _json(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> web.Response:
    if status >= 400:
        body = {**body, "traceId": trace_id()}
    return web.json_response(body, status=status, headers=headers)


class _Api:
    def __init__(self, sim: HighLevelSimulator, oauth: OAuthRoutes) -> None:
        self.sim = sim
        self.oauth = oauth

    # ------------------------------------------------------------------ gateway

    @web.middleware
    async def gateway(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith(FILES_PREFIX):
            return await handler(request)  # stands in for public storage URLs: no API rules
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

    # ------------------------------------------------------------------ conversations

    async def send_message(self, request: web.Request) -> web.Response:
        self._query(request, CONV, SEND_PATH)
        body = await self._body(request, "SendMessageBodyDto", CONV)
        self._check_contact(request, body["contactId"])
        return _json(200, self.sim.send(body))

    async def search_conversations(self, request: web.Request) -> web.Response:
        query = self._query(request, CONV, "/conversations/search")
        location_id = self._check_location(request, query.get("locationId"))
        sim = self.sim
        found = []
        horizon = time.monotonic() - sim.search_lag
        for conversation in sim.conversations.values():
            if sim.search_lag and conversation.created_monotonic > horizon:
                continue  # HighLevel's search index lags behind creation
            if sim.contacts[conversation.contact_id].location_id != location_id:
                continue
            entry = self._conversation_entry(conversation.id)
            if entry is None or not _matches(entry, query):
                continue
            found.append(entry)
        descending = query.get("sort", "desc") == "desc"
        found.sort(key=lambda e: e["lastMessageDate"], reverse=descending)
        start_after = _number(query.get("startAfterDate"))
        if start_after is not None:  # the sort value of the previous page's last
            found = [
                e
                for e in found
                if (
                    e["lastMessageDate"] < start_after
                    if descending
                    else e["lastMessageDate"] > start_after
                )
            ]
        limit = int(query.get("limit", 20))
        return _json(200, {"conversations": found[:limit], "total": len(found)})

    def _conversation_entry(self, conversation_id: str) -> dict[str, Any] | None:
        sim = self.sim
        conversation = sim.conversations[conversation_id]
        messages = sim.messages_for(conversation_id)
        if not messages:
            return None
        last = max(messages, key=lambda m: sim.activity_order(m.id))
        contact = sim.contacts[conversation.contact_id]
        last_body = last.body
        if last.channel == "Email" and last.email_ids:
            last_body = sim.emails[last.email_ids[-1]].body
        return {
            "id": conversation.id,
            "contactId": contact.id,
            "locationId": contact.location_id,
            "lastMessageBody": last_body,
            "lastMessageType": CHANNELS[last.channel].message_type,
            "lastMessageDirection": last.direction,
            "lastMessageDate": int(last.date_updated.timestamp() * 1000),
            "type": "TYPE_PHONE" if contact.phone else "TYPE_EMAIL",
            "unreadCount": conversation.unread_count,
            "fullName": contact.name,
            "contactName": contact.name,
            "email": contact.email or "",
            "phone": contact.phone or "",
            "dateAdded": int(conversation.date_added.timestamp() * 1000),
        }

    async def get_conversation(self, request: web.Request) -> web.Response:
        self._query(request, CONV, "/conversations/{conversationId}")
        sim = self.sim
        conversation = sim.conversations.get(request.match_info["conversationId"])
        if conversation is None:
            raise ApiError.bad_request("Conversation not found")
        contact = sim.contacts[conversation.contact_id]
        self._check_location(request, contact.location_id)
        return _json(
            200,
            {
                "id": conversation.id,
                "contactId": conversation.contact_id,
                "locationId": contact.location_id,
                "deleted": False,
                "inbox": True,
                "type": 1 if contact.phone else 2,
                "unreadCount": conversation.unread_count,
                "starred": False,
            },
        )

    async def list_messages(self, request: web.Request) -> web.Response:
        path = "/conversations/{conversationId}/messages"
        # `type` is a comma-separated list, which its single-value enum cannot express.
        query = self._query(request, CONV, path, skip=frozenset({"type"}))
        allowed_types = _spec.query_enum(CONV, "get", path, "type")
        wanted: set[str] | None = None
        if "type" in request.query:
            wanted = {part.strip() for part in request.query["type"].split(",") if part.strip()}
            unknown = sorted(wanted - allowed_types)
            if unknown:
                values = ", ".join(sorted(allowed_types))
                raise ApiError.unprocessable(
                    [f"type must be one of the following values: {values}"]
                )
        sim = self.sim
        conversation_id = request.match_info["conversationId"]
        if conversation_id not in sim.conversations:
            raise ApiError.bad_request("Conversation not found")
        location_id = self._check_conversation(request, conversation_id)
        messages = sorted(
            sim.messages_for(conversation_id),
            key=lambda m: sim.activity_order(m.id),
            reverse=True,  # newest first
        )
        if wanted is not None:
            messages = [m for m in messages if CHANNELS[m.channel].message_type in wanted]
        cursor = query.get("lastMessageId")
        if cursor is not None:
            ids = [m.id for m in messages]
            if cursor not in ids:
                raise ApiError.bad_request("lastMessageId not found in this conversation")
            messages = messages[ids.index(cursor) + 1 :]
        limit = max(1, min(int(query.get("limit", 20)), 100))
        page = messages[:limit]
        listing = {
            "lastMessageId": page[-1].id if page else "",
            "nextPage": len(messages) > limit,
            "messages": [m.to_api(location_id) for m in page],  # emails without body
        }
        # Real responses wrap the documented object one level deeper (highlevel-api-docs #54).
        return _json(200, {"messages": listing})

    async def get_message(self, request: web.Request) -> web.Response:
        self._query(request, CONV, "/conversations/messages/{id}")
        message = self.sim.messages.get(request.match_info["id"])
        if message is None:
            raise ApiError.bad_request("Message not found")
        location_id = self._check_contact(request, message.contact_id)
        # Real responses wrap the documented object (highlevel-api-docs #258, #212).
        return _json(200, {"message": message.to_api(location_id)})

    async def get_email(self, request: web.Request) -> web.Response:
        self._query(request, CONV, "/conversations/messages/email/{id}")
        email = self.sim.emails.get(request.match_info["id"])
        if email is None:
            raise ApiError.bad_request("Email message not found")
        location_id = self._check_contact(request, email.contact_id)
        # Independent public clients read this under `emailMessage`; the simulator wraps it.
        return _json(200, {"emailMessage": email.to_api(location_id)})

    async def cancel_message(self, request: web.Request) -> web.Response:
        self._query(request, CONV, "/conversations/messages/{messageId}/schedule")
        message = self.sim.messages.get(request.match_info["messageId"])
        if message is not None:
            self._check_contact(request, message.contact_id)
        cancelled = self.sim.cancel_scheduled(request.match_info["messageId"])
        return _cancel_answer(cancelled)

    async def cancel_email(self, request: web.Request) -> web.Response:
        self._query(request, CONV, "/conversations/messages/email/{emailMessageId}/schedule")
        email = self.sim.emails.get(request.match_info["emailMessageId"])
        if email is not None:
            self._check_contact(request, email.contact_id)
        cancelled = self.sim.cancel_scheduled_email(request.match_info["emailMessageId"])
        return _cancel_answer(cancelled)

    async def upload(self, request: web.Request) -> web.Response:
        self._query(request, CONV, "/conversations/messages/upload")
        form = await request.post()
        fields: dict[str, Any] = {}
        files: list[web.FileField] = []
        unknown_files: list[str] = []
        for key, value in form.items():
            if isinstance(value, web.FileField):
                if key == "fileAttachment":
                    files.append(value)
                else:
                    unknown_files.append(key)
            elif key in {"attachmentUrls", "attachmentUrls[]"}:
                fields.setdefault("attachmentUrls", []).append(str(value))
            else:
                fields[key] = value if isinstance(value, str) else value.decode()
        request[RECORD_KEY].body = {**fields, "fileAttachment": [f.filename for f in files]}
        errors = _spec.request_errors(CONV, "UploadFilesDto", fields, strict=self._strict())
        errors += [f"property {name} should not exist" for name in unknown_files]
        if errors:
            raise ApiError.unprocessable(errors)
        sim = self.sim
        self._check_location(request, fields["locationId"])
        self._check_conversation(request, fields["conversationId"])
        conversation = sim.conversations.get(fields["conversationId"])
        if conversation is None:
            # What HighLevel really answers for an unknown conversation (issue 39).
            message = f"Conversation with id {fields['conversationId']} not found"
            raise ApiError(500, {"statusCode": 500, "message": message})
        if fields.get("contactId") not in (None, conversation.contact_id):
            raise ApiError.bad_request("contactId does not belong to the conversation")
        if not files and not fields.get("attachmentUrls"):
            raise ApiError.bad_request("No files to upload: send them under fileAttachment")
        uploaded: dict[str, str] = {}
        origin = str(request.url.origin())
        for file in files:
            extension = file.filename.rsplit(".", 1)[-1].lower() if "." in file.filename else ""
            if extension not in UPLOAD_EXTENSIONS:
                return _json(415, {"status": 415, "message": "Unsupported file type"})
            data = file.file.read()
            if len(data) > sim.upload_max_bytes:
                return _json(413, {"status": 413, "message": "File size exceeds the limit"})
            upload_id = new_id()
            url = f"{origin}{FILES_PREFIX}{upload_id}/{quote(file.filename)}"
            sim.uploads[upload_id] = Upload(file.filename, file.content_type, data, url)
            uploaded[file.filename] = url
        for url in fields.get("attachmentUrls", []):
            uploaded[url.rsplit("/", 1)[-1] or url] = url
        return _json(200, {"uploadedFiles": uploaded})

    async def download(self, request: web.Request) -> web.Response:
        upload = self.sim.uploads.get(request.match_info["uploadId"])
        if upload is None or upload.filename != request.match_info["filename"]:
            raise web.HTTPNotFound()
        return web.Response(body=upload.data, content_type=upload.content_type)

    # ------------------------------------------------------------------ contacts

    async def duplicate_contact(self, request: web.Request) -> web.Response:
        query = self._query(request, CONT, "/contacts/search/duplicate")
        location_id = self._check_location(request, query.get("locationId"))
        email, number = query.get("email"), query.get("number")
        if not email and not number:
            raise ApiError.bad_request("number or email is required")
        contact = self.sim.find_duplicate(
            email=str(email) if email else None,
            number=str(number) if number else None,
            location_id=location_id,
        )
        found = contact.to_api(location_id) if contact else None
        return _json(200, {"contact": found})

    async def upsert_contact(self, request: web.Request) -> web.Response:
        self._query(request, CONT, "/contacts/upsert")
        body = await self._body(request, "UpsertContactDto", CONT)
        self._check_location(request, body["locationId"])
        created, contact = self.sim.upsert(body)
        return _json(
            200,
            {
                "new": created,
                "contact": contact.to_api(contact.location_id),
                "traceId": trace_id(),
            },
        )

    async def search_contacts(self, request: web.Request) -> web.Response:
        self._query(request, CONT, "/contacts/search")
        body = await self._body(request, "SearchBodyV2DTO", CONT)
        location_id = self._check_location(request, body["locationId"])
        filters: list[dict[str, Any]] = body.get("filters") or []
        sort: list[dict[str, str]] = body.get("sort") or []
        errors = filter_errors(filters, "filters") + [
            f"sort.{i}.field must be one of the following values: {', '.join(SEARCH_FIELDS)}"
            for i, rule in enumerate(sort)
            if rule["field"] not in SEARCH_FIELDS
        ]
        if "searchAfter" in body:
            errors.append("searchAfter is not supported by the sandbox: page with page")
        if errors:
            raise ApiError.unprocessable(errors)
        found = [contact.to_api(location_id) for contact in self.sim.contacts_of(location_id)]
        text = str(body.get("query") or "").strip().lower()
        if text:
            found = [entry for entry in found if query_matches(entry, text)]
        found = [entry for entry in found if group_holds(entry, "AND", filters)]
        for rule in reversed(sort):  # stable sorts, last key first
            found.sort(
                key=functools.partial(sort_key, rule["field"]),
                reverse=rule["direction"] == "desc",
            )
        limit = int(body["pageLimit"])
        start = (int(body.get("page", 1)) - 1) * limit
        page = found[start : start + limit]
        return _json(200, {"contacts": page, "total": len(found), "traceId": trace_id()})

    async def get_contact(self, request: web.Request) -> web.Response:
        self._query(request, CONT, "/contacts/{contactId}")
        contact = self.sim.contacts.get(request.match_info["contactId"])
        if contact is None:
            raise ApiError.bad_request("Contact not found")
        self._check_location(request, contact.location_id)
        return _json(200, {"contact": contact.to_api(contact.location_id)})

    # ------------------------------------------------------------------ sandbox control

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


def _cancel_answer(cancelled: bool) -> web.Response:
    # Failure is a 200 whose body says 404 (CancelScheduledResponseDto example).
    if cancelled:
        return _json(200, {"status": 200, "message": "Scheduled message cancelled successfully"})
    return _json(200, {"status": 404, "message": "Failed cancel the scheduled message"})


def _matches(entry: dict[str, Any], query: dict[str, Any]) -> bool:
    if "contactId" in query and entry["contactId"] != query["contactId"]:
        return False
    if "id" in query and entry["id"] != query["id"]:
        return False
    if "lastMessageType" in query and entry["lastMessageType"] != query["lastMessageType"]:
        return False
    if (
        "lastMessageDirection" in query
        and entry["lastMessageDirection"] != query["lastMessageDirection"]
    ):
        return False
    status = query.get("status")
    if status == "unread" and entry["unreadCount"] == 0:
        return False
    if status == "read" and entry["unreadCount"] > 0:
        return False
    text = str(query.get("query") or "").strip().lower()
    if text:
        haystack = " ".join(str(entry[key]) for key in ("fullName", "email", "phone")).lower()
        if text not in haystack:
            return False
    return True


def _number(value: object) -> float | None:
    """A query value that should be a number (query strings arrive as text); else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None
