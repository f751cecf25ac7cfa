"""File endpoints: multipart upload, signed upload (initiate, PUT, complete), served files."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any
from xml.sax.saxutils import escape

from aiohttp import web

from . import _spec
from ._api_base import CONV, SIGNED_UPLOAD_PREFIX, ApiBase, _json
from ._errors import ApiError
from ._files import media_type, refused_type
from ._oauth_routes import PRINCIPAL_KEY, RECORD_KEY
from ._records import SignedUpload, Upload

__all__ = ["COMPLETE_PATH", "INITIATE_PATH", "UPLOAD_PATH", "FileEndpoints"]

UPLOAD_PATH = "/conversations/messages/upload"
INITIATE_PATH = "/conversations/messages/upload/initiate"
COMPLETE_PATH = "/conversations/messages/upload/complete"
WRITE_SCOPE = "conversations/message.write"
_NO_SCOPE = "The token is not authorized for this scope."
_TOO_BIG = "File size exceeds the limit"
_WRONG_TYPE = "Unsupported file type"
_NOT_IN_STORAGE = "File not found in storage - upload may have failed or URL expired"
_CHUNK = 64 * 1024


class FileEndpoints(ApiBase):
    """Uploads and the files they serve (part of the app's ``_Api``)."""

    def _check_write_scope(self, request: web.Request) -> None:
        # Only OAuth tokens carry the scopes their install granted; a PIT's are not modelled.
        token = request[PRINCIPAL_KEY]
        if token.kind == "access" and WRITE_SCOPE not in token.scope.split():
            raise ApiError.unauthorized(_NO_SCOPE)

    async def upload(self, request: web.Request) -> web.Response:
        self._check_write_scope(request)
        self._query(request, CONV, UPLOAD_PATH)
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
        location_id = self._check_location(request, fields["locationId"])
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
        # Every file is checked before any is kept: a refused request stores nothing.
        contents: list[tuple[web.FileField, bytes]] = []
        for file in files:
            if refused_type(file.filename, file.content_type):
                return _json(415, {"status": 415, "message": _WRONG_TYPE})
            data = file.file.read()
            if len(data) > sim.upload_max_bytes:
                return _json(413, {"status": 413, "message": _TOO_BIG})
            contents.append((file, data))
        uploaded: dict[str, str] = {}
        origin = str(request.url.origin())
        for file, data in contents:
            stored = sim.store_file(
                file.filename,
                data,
                file.content_type,
                origin=origin,
                via="upload",
                location_id=location_id,
                conversation_id=conversation.id,
            )
            uploaded[file.filename] = stored.url
        for url in fields.get("attachmentUrls", []):
            uploaded[url.rsplit("/", 1)[-1] or url] = url
        return _json(200, {"uploadedFiles": uploaded})

    async def upload_initiate(self, request: web.Request) -> web.Response:
        self._check_write_scope(request)
        self._query(request, CONV, INITIATE_PATH)
        body = await self._body(request, "InitiateFileUploadDto", CONV)
        sim = self.sim
        location_id = self._check_location(request, body["locationId"])
        conversation_id = body["conversationId"]
        self._check_conversation(request, conversation_id)
        if conversation_id not in sim.conversations:
            raise ApiError.bad_request(f"Conversation with id {conversation_id} not found")
        if refused_type(body["filename"], body["contentType"]):
            return _json(415, {"status": 415, "message": _WRONG_TYPE})
        limit = sim.upload_limit(body["channel"])
        declared_size = body.get("fileSize")
        if declared_size is not None and declared_size > limit:
            return _json(413, {"status": 413, "message": _TOO_BIG})
        signed = sim.initiate_upload(
            filename=body["filename"],
            content_type=body["contentType"],
            channel=body["channel"],
            location_id=location_id,
            conversation_id=conversation_id,
        )
        origin = str(request.url.origin())
        return _json(
            200,
            {
                "uploadUrl": f"{origin}{SIGNED_UPLOAD_PREFIX}{signed.token}",
                "uploadId": signed.upload_id,
                "filePath": signed.file_path,
                "expiresAt": signed.expires_at_ms,
                "maxFileSize": signed.max_bytes,
            },
        )

    async def signed_put(self, request: web.Request) -> web.Response:
        """The signed URL: no token or Version (the signature is the path), GCS-style errors."""
        signed = self.sim.signed_upload_by_token(request.match_info["token"])
        if signed is None:
            return _storage_error(403, "SignatureDoesNotMatch", "The request signature is wrong.")
        if _now_ms() >= signed.expires_at_ms:
            return _storage_error(403, "AccessDenied", "Request has expired.")
        if media_type(request.headers.get("Content-Type")) != media_type(signed.content_type):
            # The content type is part of what was signed.
            return _storage_error(
                403, "SignatureDoesNotMatch", "Content-Type differs from the signed one."
            )
        data = await _read_at_most(request, signed.max_bytes)
        if data is None:
            return _storage_error(413, "EntityTooLarge", "The file exceeds maxFileSize.")
        signed.data = data
        signed.puts += 1
        return web.Response(status=200)

    async def upload_complete(self, request: web.Request) -> web.Response:
        self._check_write_scope(request)
        self._query(request, CONV, COMPLETE_PATH)
        body = await self._body(request, "CompleteFileUploadDto", CONV)
        location_id = self._check_location(request, body["locationId"])
        self._check_conversation(request, body["conversationId"])
        signed = self.sim.signed_uploads.get(body["uploadId"])
        if signed is None or signed.data is None or not _belongs(signed, body, location_id):
            missing = {"statusCode": 404, "message": _NOT_IN_STORAGE, "error": "Not Found"}
            raise ApiError(404, missing)
        stored = self.sim.complete_upload(signed, str(request.url.origin()))
        return _json(
            200,
            {
                "uploadedFiles": {body["filename"]: stored.url},
                "metadata": {"size": len(stored.data), "contentType": stored.content_type},
            },
        )

    async def download(self, request: web.Request) -> web.StreamResponse:
        """GET or HEAD of a served file; ``Range`` is ignored (the whole file, 200)."""
        sim = self.sim
        faults = sim.file_faults
        if faults.latency > 0:
            await self._hold(faults.latency)
        if faults.error_next > 0:
            faults.error_next -= 1
            return _storage_error(faults.error_status, "InternalError", "Injected failure.")
        upload = sim.served_file(request.match_info["fileId"], request.match_info["filename"])
        if upload is None:
            return _storage_error(404, "NoSuchKey", "The specified key does not exist.")
        headers = {"Content-Type": upload.content_type, "Accept-Ranges": "none"}
        if request.method == "HEAD":
            return web.Response(body=upload.data, headers=headers)  # aiohttp sends no body
        upload.downloads += 1
        stall = faults.stall_after_bytes
        if stall is None or stall >= len(upload.data):
            return web.Response(body=upload.data, headers=headers)
        return await self._stalled(request, upload, headers, stall, faults.stall_seconds)

    async def _stalled(
        self,
        request: web.Request,
        upload: Upload,
        headers: dict[str, str],
        stall: int,
        seconds: float,
    ) -> web.StreamResponse:
        response = web.StreamResponse(headers=headers)
        response.content_length = len(upload.data)
        await response.prepare(request)
        await response.write(upload.data[:stall])
        await self._hold(seconds)
        await response.write(upload.data[stall:])
        await response.write_eof()
        return response

    async def _hold(self, seconds: float) -> None:
        """Wait ``seconds``, or less if the simulator stops meanwhile."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.sim.stopping.wait(), seconds)


def _belongs(signed: SignedUpload, body: dict[str, Any], location_id: str) -> bool:
    # The file path names the location and conversation: another one's is not "in storage".
    return (
        signed.file_path == body["filePath"]
        and signed.location_id == location_id
        and signed.conversation_id == body["conversationId"]
    )


async def _read_at_most(request: web.Request, limit: int) -> bytes | None:
    """The request body, or None as soon as it is known to exceed ``limit`` bytes."""
    if request.content_length is not None and request.content_length > limit:
        return None
    chunks: list[bytes] = []
    total = 0
    async for chunk in request.content.iter_chunked(_CHUNK):
        total += len(chunk)
        if total > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _storage_error(status: int, code: str, message: str) -> web.Response:
    """Google Cloud Storage's XML error shape (the signed URL and the served files are GCS)."""
    body = (
        "<?xml version='1.0' encoding='UTF-8'?>"
        f"<Error><Code>{escape(code)}</Code><Message>{escape(message)}</Message></Error>"
    )
    return web.Response(status=status, text=body, content_type="application/xml")


def _now_ms() -> int:
    return int(time.time() * 1000)
