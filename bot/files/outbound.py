"""OutboundFiles: the Slack files of a send, uploaded to HighLevel once each, their URLs kept
in the store before the send that carries them."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import httpx

from bot.files.rules import SlackFileRef, upload_limit_bytes
from bot.files.slack_files import SlackFileError, SlackFileReader
from bot.highlevel import (
    HighLevelClient,
    HighLevelError,
    MessageChannel,
    RateLimitedError,
    ValidationError,
)
from bot.tenancy.accounts import SubAccounts
from storage import OutboxEntry, Store

log = logging.getLogger(__name__)

# The multipart upload takes up to 5 MB; a bigger file (WhatsApp's, up to 100 MB) goes
# through the signed upload.
MULTIPART_MAX_BYTES = 5 * 1024 * 1024


class FileSendError(Exception):
    """A file of a send could not be made ready; `lasting` when trying again cannot help
    (the send then fails, with `reason` shown on its post)."""

    def __init__(self, reason: str, *, lasting: bool, retry_after: float = 0.0) -> None:
        super().__init__(reason)
        self.reason = reason
        self.lasting = lasting
        self.retry_after = retry_after


class OutboundFiles:
    """Makes a send's files into HighLevel attachment URLs, each uploaded once."""

    def __init__(
        self,
        *,
        store: Store,
        accounts: SubAccounts,
        reader: SlackFileReader,
        conversation_waits: Sequence[float] = (0.5, 1.5, 3.0),
    ) -> None:
        self._store = store
        self._accounts = accounts
        self._reader = reader
        self._conversation_waits = tuple(conversation_waits)

    async def all_uploaded(self, entry: OutboxEntry, files: Sequence[SlackFileRef]) -> bool:
        """Every file of the send has its URL: the send may have been requested."""
        uploaded = await self._store.outbox_uploads(entry.id)
        return all(file.id in uploaded for file in files)

    async def attachment_urls(
        self,
        entry: OutboxEntry,
        files: Sequence[SlackFileRef],
        *,
        conversation_id: str | None,
    ) -> list[str]:
        """The send's attachments, in the order picked; FileSendError when not ready."""
        uploaded = await self._store.outbox_uploads(entry.id)
        missing = [file for file in files if file.id not in uploaded]
        if missing:
            highlevel = self._accounts.client(entry.location_id)
            channel = MessageChannel(entry.message_type)
            conversation = conversation_id or await self._conversation(highlevel, entry)
            if conversation != entry.conversation_id:
                await self._store.set_outbox_conversation(entry.id, conversation)
            for file in missing:
                url = await self._upload(highlevel, entry, channel, conversation, file)
                # Kept before the next step: a retry, restart or other instance reuses it.
                uploaded[file.id] = await self._store.record_outbox_upload(entry.id, file.id, url)
                log.info("outbox %d: uploaded file %s", entry.id, file.id)
        return [uploaded[file.id] for file in files]

    async def _upload(
        self,
        highlevel: HighLevelClient,
        entry: OutboxEntry,
        channel: MessageChannel,
        conversation_id: str,
        file: SlackFileRef,
    ) -> str:
        try:
            content = await self._reader.read(
                entry.team_id, file, max_bytes=upload_limit_bytes(channel)
            )
        except SlackFileError as exc:
            raise FileSendError(exc.reason, lasting=exc.lasting) from None
        item = (file.name, content.data, content.content_type)
        try:
            if len(content.data) <= MULTIPART_MAX_BYTES:
                urls = await highlevel.upload_attachments(
                    conversation_id=conversation_id, contact_id=entry.contact_id, files=[item]
                )
                url = urls.get(file.name) or next(iter(urls.values()), None)
            else:
                url = await highlevel.upload_large_attachment(
                    conversation_id=conversation_id, channel=channel, file=item
                )
        except HighLevelError as exc:
            raise _upload_error(file, exc) from None
        if not url:
            raise FileSendError(f"HighLevel kept no copy of {file.name}.", lasting=False)
        return url

    async def _conversation(self, highlevel: HighLevelClient, entry: OutboxEntry) -> str:
        """The contact's conversation (made if it has none): uploads belong to one."""
        try:
            found = await self._find_conversation(highlevel, entry.contact_id)
            if found is not None:
                return found
            try:
                return await highlevel.create_conversation(entry.contact_id)
            except ValidationError:
                # It has one already that search did not show yet (its index lags behind,
                # highlevel-api-docs issue 5); HighLevel's answer does not say which.
                pass
            for wait in self._conversation_waits:
                await asyncio.sleep(wait)
                found = await self._find_conversation(highlevel, entry.contact_id)
                if found is not None:
                    return found
        except HighLevelError as exc:
            raise FileSendError(
                f"HighLevel did not find the customer's conversation to attach the files to: "
                f"{exc.message}",
                lasting=False,
                retry_after=getattr(exc, "retry_after", 0.0),
            ) from None
        raise FileSendError(
            "HighLevel did not show the customer's conversation yet, so the files could not "
            "be attached; trying again.",
            lasting=False,
        )

    @staticmethod
    async def _find_conversation(highlevel: HighLevelClient, contact_id: str) -> str | None:
        search = await highlevel.search_conversations(contact_id=contact_id, limit=1)
        return search.conversations[0].id if search.conversations else None


def _upload_error(file: SlackFileRef, exc: HighLevelError) -> FileSendError:
    if exc.status_code == 413:
        return FileSendError(f"HighLevel refused {file.name}: it is too big.", lasting=True)
    if exc.status_code == 415:
        return FileSendError(
            f"HighLevel refused {file.name}: it does not take that type of file.", lasting=True
        )
    transient = (
        isinstance(exc, RateLimitedError)
        or exc.may_have_acted
        or exc.status_code is None
        or exc.status_code >= 500
    )
    return FileSendError(
        f"HighLevel did not take {file.name}: {exc.message}",
        lasting=not transient,
        retry_after=getattr(exc, "retry_after", 0.0),
    )


def file_transfer_client() -> httpx.AsyncClient:
    """The HTTP client of file downloads: bounded in time, never following a redirect."""
    return httpx.AsyncClient(
        timeout=httpx.Timeout(30.0, connect=10.0),
        follow_redirects=False,
        headers={"User-Agent": "ghl-bridge (file transfer)"},
    )
