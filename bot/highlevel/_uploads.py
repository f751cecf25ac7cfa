"""Attachment calls of the HighLevel client: a conversation to upload into, the multipart
upload, and the signed upload (initiate → PUT → complete) for files past the multipart limit.

Kept apart from `_client` (which mixes this in) because it is its own small protocol; every
call still goes through the client's `_request` (token, rate limit, retries, errors).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

import httpx
from pydantic import BaseModel, Field

from ._calls import ClientCalls
from ._conversation_models import UploadAttachmentsResponse
from ._errors import UnavailableError, error_for_status
from ._models import MessageChannel, _ResponseModel
from ._wire import _error_message, _Kind, _try_json

_ModelT = TypeVar("_ModelT", bound=BaseModel)


class CreatedConversation(_ResponseModel):
    id: str
    contact_id: str | None = None


class CreateConversationResponse(_ResponseModel):
    """201 of POST /conversations/."""

    conversation: CreatedConversation


class InitiatedUpload(_ResponseModel):
    """200 of POST /conversations/messages/upload/initiate: where to PUT the bytes."""

    upload_url: str
    upload_id: str
    file_path: str
    expires_at: int | None = None
    max_file_size: int | None = Field(default=None)


class UploadCalls(ClientCalls):
    """Mixed into HighLevelClient."""

    _http: httpx.AsyncClient

    async def create_conversation(self, contact_id: str) -> str:
        """POST /conversations/ → the new conversation's id.

        HighLevel keeps one conversation per contact: for a contact that has one it answers
        400 without its id (highlevel-api-docs issue 5), raised as ValidationError.
        """
        body = await self._request(
            "POST",
            "/conversations/",
            kind=_Kind.WRITE,
            version=self._conversations_version,
            json={"locationId": self._location_id, "contactId": contact_id},
        )
        return self._parse(CreateConversationResponse, body, kind=_Kind.WRITE).conversation.id

    async def upload_attachments(
        self,
        *,
        conversation_id: str,
        contact_id: str,
        files: Sequence[tuple[str, bytes, str]],
    ) -> dict[str, str]:
        """POST /conversations/messages/upload; ``files`` are (filename, content, content type).

        Returns filename → URL; pass the URLs as ``attachments`` of a send.
        """
        if not files:
            raise ValueError("files must not be empty")
        body = await self._request(
            "POST",
            "/conversations/messages/upload",
            kind=_Kind.WRITE,
            version=self._conversations_version,
            data={
                "conversationId": conversation_id,
                "contactId": contact_id,
                "locationId": self._location_id,
            },
            files=[("fileAttachment", (name, content, ctype)) for name, content, ctype in files],
        )
        return self._parse(UploadAttachmentsResponse, body, kind=_Kind.WRITE).uploaded_files

    async def upload_large_attachment(
        self,
        *,
        conversation_id: str,
        channel: MessageChannel,
        file: tuple[str, bytes, str],
    ) -> str:
        """A file past the multipart limit: initiate (a signed URL), PUT the bytes to it,
        complete; returns the file's URL. The channel sets HighLevel's limit (WhatsApp's is
        100 MB, the others' 5 MB)."""
        name, content, content_type = file
        body = await self._request(
            "POST",
            "/conversations/messages/upload/initiate",
            kind=_Kind.WRITE,
            version=self._conversations_version,
            json={
                "locationId": self._location_id,
                "conversationId": conversation_id,
                "filename": name,
                "contentType": content_type,
                "channel": "WHATSAPP" if channel is MessageChannel.WHATSAPP else channel.value,
                "fileSize": len(content),
            },
        )
        signed = self._parse(InitiatedUpload, body, kind=_Kind.WRITE)
        # The signed URL is storage, not the API: no token (it would break the signature),
        # no rate budget; the content type is part of what was signed.
        try:
            stored = await self._http.put(
                signed.upload_url, content=content, headers={"Content-Type": content_type}
            )
        except httpx.RequestError as exc:
            raise UnavailableError(
                f"the file store did not take the upload ({type(exc).__name__})",
                may_have_acted=True,
            ) from exc
        if not 200 <= stored.status_code < 300:
            raise error_for_status(
                stored.status_code,
                _error_message(_try_json(stored), stored),
                trace_id=None,
                may_have_acted=False,
            )
        body = await self._request(
            "POST",
            "/conversations/messages/upload/complete",
            kind=_Kind.WRITE,
            version=self._conversations_version,
            json={
                "uploadId": signed.upload_id,
                "filePath": signed.file_path,
                "locationId": self._location_id,
                "conversationId": conversation_id,
                "filename": name,
            },
        )
        uploaded = self._parse(UploadAttachmentsResponse, body, kind=_Kind.WRITE).uploaded_files
        return uploaded.get(name) or next(iter(uploaded.values()))
