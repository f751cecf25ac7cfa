"""Pydantic models of HighLevel's conversations and their messages (Version 2021-04-15),
permissive as every response model (`_models._ResponseModel`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import Field, field_validator

from ._models import _ResponseModel

__all__ = [
    "CancelScheduledResponse",
    "Conversation",
    "ConversationSearchResult",
    "EmailMessage",
    "Message",
    "MessageMeta",
    "MessageMetaEmail",
    "MessagePage",
    "UploadAttachmentsResponse",
]


class Conversation(_ResponseModel):
    """A conversation from GET /conversations/{id} or GET /conversations/search.

    ``type`` is a number from GET by id (1 phone, 2 email, ...) but a string (``TYPE_PHONE``)
    in search results.
    """

    id: str
    contact_id: str | None = None
    location_id: str | None = None
    type: int | str | None = None
    unread_count: int | None = None
    deleted: bool | None = None
    inbox: bool | None = None
    starred: bool | None = None
    assigned_to: str | None = None
    last_message_body: str | None = None
    last_message_type: str | None = None
    last_message_direction: str | None = None
    last_message_date: int | None = None
    """Unix milliseconds."""
    full_name: str | None = None
    contact_name: str | None = None
    email: str | None = None
    phone: str | None = None
    sort: list[Any] | None = None
    """Sort values; pass the last result's to ``start_after_date`` to page on."""


class ConversationSearchResult(_ResponseModel):
    conversations: list[Conversation]
    total: int | None = None


class MessageMetaEmail(_ResponseModel):
    message_ids: list[str] = Field(default_factory=list)


class MessageMeta(_ResponseModel):
    call_duration: int | str | None = None
    call_status: str | None = None
    email: MessageMetaEmail | None = None


class Message(_ResponseModel):
    """A conversation message (GetMessageResponseDto), permissive.

    ``type`` is numeric (1 call, 2 SMS, 3 email, 19 WhatsApp, ...), ``message_type`` the
    string form (``TYPE_SMS``). Email bodies are not included; fetch them with ``get_email``
    using the ids in ``meta.email.message_ids``.
    """

    id: str
    type: int | None = None
    message_type: str | None = None
    location_id: str | None = None
    contact_id: str | None = None
    conversation_id: str | None = None
    date_added: datetime | None = None
    date_updated: datetime | None = None
    direction: str | None = None
    content_type: str | None = None
    body: str | None = None
    status: str | None = None
    attachments: list[str] = Field(default_factory=list)
    meta: MessageMeta | None = None
    source: str | None = None
    user_id: str | None = None
    alt_id: str | None = None
    conversation_provider_id: str | None = None

    @field_validator("attachments", mode="before")
    @classmethod
    def _null_attachments(cls, value: object) -> object:
        return [] if value is None else value


class MessagePage(_ResponseModel):
    """One page of GET /conversations/{id}/messages (newest first)."""

    last_message_id: str | None = None
    next_page: bool = False
    messages: list[Message] = Field(default_factory=list)


def _as_address_list(value: object) -> object:
    if value is None:
        return []
    if isinstance(value, str):
        return [value] if value else []
    return value


class EmailMessage(_ResponseModel):
    """An email (GetEmailMessageResponseDto). ``to``/``cc``/``bcc`` may arrive as a string."""

    id: str
    thread_id: str | None = None
    location_id: str | None = None
    contact_id: str | None = None
    conversation_id: str | None = None
    date_added: datetime | None = None
    subject: str | None = None
    body: str | None = None
    direction: str | None = None
    content_type: str | None = None
    from_: str | None = Field(default=None, alias="from")
    """``"Name <address>"``."""
    to: list[str] = Field(default_factory=list)
    cc: list[str] = Field(default_factory=list)
    bcc: list[str] = Field(default_factory=list)
    status: str | None = None
    reply_to_message_id: str | None = None
    attachments: list[str] = Field(default_factory=list)
    alt_id: str | None = None
    provider: str | None = None
    source: str | None = None

    @field_validator("to", "cc", "bcc", mode="before")
    @classmethod
    def _addresses(cls, value: object) -> object:
        return _as_address_list(value)

    @field_validator("attachments", mode="before")
    @classmethod
    def _null_attachments(cls, value: object) -> object:
        return [] if value is None else value


class CancelScheduledResponse(_ResponseModel):
    """200 of DELETE .../schedule: ``status`` is an HTTP status *inside* the body."""

    status: int
    message: str | None = None


class UploadAttachmentsResponse(_ResponseModel):
    """200 of POST /conversations/messages/upload: ``uploaded_files`` maps filename to URL."""

    uploaded_files: dict[str, str]
    twilio_media_sids: list[str] | None = None
