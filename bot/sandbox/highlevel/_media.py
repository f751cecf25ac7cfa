"""Files the simulator keeps and serves: uploads, signed uploads, customers' media, late media."""

from __future__ import annotations

import secrets
import time
import uuid
from urllib.parse import quote, urlsplit

from ._errors import ApiError
from ._files import FileFaults, extension_of, safe_filename
from ._models import SimConversation, SimMessage, new_id, now
from ._records import AttachmentSend, SignedUpload, Upload
from ._store import StoreMixin

__all__ = ["FILES_PREFIX", "SIGNED_UPLOAD_PREFIX", "MediaMixin"]

FILES_PREFIX = "/sandbox-files/"
# Where upload/initiate's signed URLs point: no Authorization, like a GCS signed URL.
SIGNED_UPLOAD_PREFIX = "/sandbox-upload/"
# initiate-file-upload: "WHATSAPP for 100MB limit, others for 5MB".
WHATSAPP_UPLOAD_CHANNEL = "WHATSAPP"


class MediaMixin(StoreMixin):
    """Served files and what happened to them (part of ``HighLevelSimulator``)."""

    upload_max_bytes: int
    _base_url: str | None

    def _init_media(self, upload_max_bytes: int, whatsapp_upload_max_bytes: int) -> None:
        self.upload_max_bytes = upload_max_bytes  # multipart uploads; initiate, non-WhatsApp
        self.whatsapp_upload_max_bytes = whatsapp_upload_max_bytes
        self.signed_url_ttl = 15 * 60.0  # seconds a signed upload URL stays valid
        self.files_base_url: str | None = None  # customers' media URLs; default: base_url
        self.files: dict[str, Upload] = {}  # every served file, by file id
        self.uploads: dict[str, Upload] = {}  # those uploaded through the API, by file id
        self.signed_uploads: dict[str, SignedUpload] = {}  # by uploadId
        self._signed_by_token: dict[str, str] = {}
        self.attachment_sends: list[AttachmentSend] = []
        self.file_faults = FileFaults()

    # ------------------------------------------------------------------ served files

    def store_file(
        self,
        filename: str,
        data: bytes,
        content_type: str,
        *,
        origin: str,
        via: str,
        location_id: str = "",
        conversation_id: str = "",
    ) -> Upload:
        """Keep ``data`` and serve it at ``{origin}/sandbox-files/{id}/{filename}``."""
        name = safe_filename(filename)
        file_id = new_id()
        url = f"{origin}{FILES_PREFIX}{file_id}/{quote(name)}"
        upload = Upload(
            name,
            content_type or "application/octet-stream",
            data,
            url,
            file_id=file_id,
            via=via,
            location_id=location_id,
            conversation_id=conversation_id,
        )
        self.files[file_id] = upload
        if via != "customer":
            self.uploads[file_id] = upload
        return upload

    def _customer_files(
        self, conversation: SimConversation, media: list[tuple[str, bytes, str]], origin: str
    ) -> list[str]:
        """A customer's media as served files; their URLs."""
        location_id = self.contacts[conversation.contact_id].location_id
        return [
            self.store_file(
                filename,
                data,
                content_type,
                origin=origin,
                via="customer",
                location_id=location_id,
                conversation_id=conversation.id,
            ).url
            for filename, data, content_type in media
        ]

    def served_file(self, file_id: str, filename: str) -> Upload | None:
        upload = self.files.get(file_id)
        if upload is None or upload.filename != filename:
            return None
        return upload

    def _files_origin(self) -> str:
        origin = self.files_base_url or self._base_url
        if origin is None:
            raise RuntimeError(
                "customers' media need a URL: start the simulator, or set sim.files_base_url "
                "to where its app is served"
            )
        return origin.rstrip("/")

    # ------------------------------------------------------------------ signed uploads

    def upload_limit(self, channel: str) -> int:
        """upload/initiate's ``maxFileSize`` for a ``channel`` value."""
        if channel.strip().upper() == WHATSAPP_UPLOAD_CHANNEL:
            return self.whatsapp_upload_max_bytes
        return self.upload_max_bytes

    def initiate_upload(
        self,
        *,
        filename: str,
        content_type: str,
        channel: str,
        location_id: str,
        conversation_id: str,
    ) -> SignedUpload:
        upload_id = str(uuid.uuid4())
        extension = extension_of(filename)
        name = f"{upload_id}.{extension}" if extension else upload_id
        signed = SignedUpload(
            upload_id=upload_id,
            token=secrets.token_urlsafe(24),
            file_path=f"location/{location_id}/conversations/{conversation_id}/{name}",
            filename=safe_filename(filename),
            content_type=content_type,
            channel=channel,
            location_id=location_id,
            conversation_id=conversation_id,
            max_bytes=self.upload_limit(channel),
            expires_at_ms=int((time.time() + self.signed_url_ttl) * 1000),
        )
        self.signed_uploads[upload_id] = signed
        self._signed_by_token[signed.token] = upload_id
        return signed

    def signed_upload_by_token(self, token: str) -> SignedUpload | None:
        upload_id = self._signed_by_token.get(token)
        return self.signed_uploads.get(upload_id) if upload_id else None

    def expire_upload(self, upload_id: str) -> None:
        """End a signed URL's validity now (an expiry a test can cause without waiting)."""
        self.signed_uploads[upload_id].expires_at_ms = int(time.time() * 1000) - 1

    def complete_upload(self, signed: SignedUpload, origin: str) -> Upload:
        """The file a finished signed upload became (the same one if completed again)."""
        if signed.data is None:
            raise KeyError(signed.upload_id)
        if signed.completed is None:
            signed.completed = self.store_file(
                signed.filename,
                signed.data,
                signed.content_type,
                origin=origin,
                via="signed",
                location_id=signed.location_id,
                conversation_id=signed.conversation_id,
            )
        return signed.completed

    # ------------------------------------------------------------------ attachments of sends

    @staticmethod
    def check_attachment_urls(urls: list[str]) -> None:
        """What HighLevel refuses in ``attachments``: ApiError 422 (nothing stored)."""
        for url in urls:
            parts = urlsplit(url)
            if parts.scheme not in {"http", "https"} or not parts.netloc:
                raise ApiError.unprocessable(["each value in attachments must be a URL address"])
            if "alt=media" in parts.query.split("&"):
                # ghl-marketplace-app-template #11: such URLs are dropped, then the list is empty.
                raise ApiError.unprocessable(["attachments must contain at least 1 elements"])

    def _record_attachment_send(self, send: AttachmentSend) -> None:
        if send.attachments:
            self.attachment_sends.append(send)

    def sends_with_attachments(self, url: str | None = None) -> list[AttachmentSend]:
        """Accepted sends that carried attachments (only those carrying ``url`` if given)."""
        return [s for s in self.attachment_sends if url is None or url in s.attachments]

    def attachment_send_count(self, url: str) -> int:
        """How many accepted sends carried ``url``."""
        return len(self.sends_with_attachments(url))

    # ------------------------------------------------------------------ late media (HLD#299)

    def media_arrives(self, message_id: str) -> SimMessage:
        """A late WhatsApp media message gets its body and attachments (no webhook, as live)."""
        message = self.messages[message_id]
        if not message.media_pending:
            raise ValueError(f"message {message_id!r} has no media waiting")
        message.media_pending = False
        message.media_reads_left = None
        message.date_updated = now()
        return message

    def note_message_read(self, message: SimMessage) -> None:
        """One GET of the message: counts towards ``media_after_reads``."""
        if not message.media_pending or message.media_reads_left is None:
            return
        if message.media_reads_left <= 0:
            self.media_arrives(message.id)
        else:
            message.media_reads_left -= 1
