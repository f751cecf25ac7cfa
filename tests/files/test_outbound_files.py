"""OutboundFiles against both real simulators: Slack files downloaded with the bot token,
uploaded to HighLevel once each (multipart, or the signed upload past 5 MB), URLs kept in a real
SQLite store before any send, and every failure a sentence naming the file."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr
from slack_sdk.web.async_client import AsyncWebClient

from bot.files import SlackFileRef
from bot.files.outbound import FileSendError, OutboundFiles, file_transfer_client
from bot.files.slack_files import SlackFileReader
from bot.highlevel import HighLevelClient, MessageChannel, RateLimiter
from bot.posting.poster import OnePoster, SlackPoster
from bot.sandbox.highlevel import ADA_LOVELACE_ID, GRACE_HOPPER_ID, HighLevelSimulator
from bot.sandbox.slack import SlackSimulator
from bot.sandbox.slack._files import SlackFile
from bot.tenancy.accounts import SubAccounts
from storage import OutboxEntry, SqliteStore, open_store

USER = "U0AGENT"
PDF = b"%PDF-1.7\n" + b"x" * 2000
PNG = b"\x89PNG\r\n\x1a\n" + b"p" * 3000


@dataclass
class Parts:
    highlevel: HighLevelSimulator
    slack: SlackSimulator
    store: SqliteStore
    files: OutboundFiles

    def slack_file(self, name: str, data: bytes, mimetype: str | None = None) -> SlackFileRef:
        file: SlackFile = self.slack.add_file(name, data, mimetype, user=USER)
        return SlackFileRef(file.id, file.name, file.mimetype, file.size)

    async def entry(self, contact_id: str, channel: MessageChannel, key: str) -> OutboxEntry:
        entry, _ = await self.store.enqueue(
            idempotency_key=key,
            team_id=self.slack.team_id,
            channel_id="C0SALES",
            slack_user_id=USER,
            location_id=self.highlevel.location_id,
            contact_id=contact_id,
            message_type=channel.value,
            payload={},
        )
        return entry

    def uploads(self) -> list[tuple[str, bytes]]:
        return [(u.filename, u.data) for u in self.highlevel.uploads.values()]


@pytest.fixture
async def parts(tmp_path: Path) -> AsyncIterator[Parts]:
    highlevel = HighLevelSimulator()
    await highlevel.start()
    slack = SlackSimulator()
    slack.add_user(USER, "Agent")
    await slack.start()
    store = await open_store(f"sqlite:///{tmp_path / 'bridge.sqlite3'}")
    assert isinstance(store, SqliteStore)
    web = AsyncWebClient(token=slack.bot_token, base_url=slack.api_url)

    def make_client(location_id: str) -> HighLevelClient:
        return HighLevelClient(
            token=SecretStr(highlevel.token),
            location_id=location_id,
            base_url=highlevel.base_url,
            limiter=RateLimiter(max_requests=100, interval=1.0),
            timeout=httpx.Timeout(10.0),
            backoff_base=0.01,
        )

    accounts = SubAccounts(store, make_client)
    http = file_transfer_client()
    reader = SlackFileReader(
        slack=OnePoster(SlackPoster(web)), http=http, slack_api_url=slack.api_url
    )
    files = OutboundFiles(store=store, accounts=accounts, reader=reader, conversation_waits=(0.05,))
    try:
        yield Parts(highlevel, slack, store, files)
    finally:
        await http.aclose()
        await accounts.aclose()
        await store.close()
        await slack.stop()
        await highlevel.stop()


async def test_each_file_is_uploaded_once_and_its_url_kept(parts: Parts) -> None:
    picked = [
        parts.slack_file("invoice.pdf", PDF),
        parts.slack_file("front.png", PNG),
        parts.slack_file("back.png", PNG[::-1]),
    ]
    entry = await parts.entry(ADA_LOVELACE_ID, MessageChannel.SMS, "three-files")

    urls = await parts.files.attachment_urls(entry, picked, conversation_id=None)

    assert [name for name, _ in parts.uploads()] == ["invoice.pdf", "front.png", "back.png"]
    served = {u.url: u.data for u in parts.highlevel.uploads.values()}
    assert [served[url] for url in urls] == [PDF, PNG, PNG[::-1]]
    assert await parts.store.outbox_uploads(entry.id) == {
        f.id: u for f, u in zip(picked, urls, strict=True)
    }
    assert await parts.files.all_uploaded(entry, picked)
    # Asked again (a retry, a restart, another instance): the kept URLs, nothing uploaded.
    assert await parts.files.attachment_urls(entry, picked, conversation_id=None) == urls
    assert len(parts.uploads()) == 3


async def test_a_contact_without_a_conversation_gets_one_to_upload_into(parts: Parts) -> None:
    assert parts.highlevel.conversation_for(GRACE_HOPPER_ID) is None
    entry = await parts.entry(GRACE_HOPPER_ID, MessageChannel.EMAIL, "new-conversation")

    await parts.files.attachment_urls(
        entry, [parts.slack_file("invoice.pdf", PDF)], conversation_id=None
    )

    conversation = parts.highlevel.conversation_for(GRACE_HOPPER_ID)
    assert conversation is not None
    (upload,) = parts.highlevel.uploads.values()
    assert upload.conversation_id == conversation.id


async def test_a_big_whatsapp_file_goes_through_the_signed_upload(parts: Parts) -> None:
    video = b"\x00\x00\x00\x18ftypmp42" + b"v" * (7 * 1024 * 1024)
    entry = await parts.entry(ADA_LOVELACE_ID, MessageChannel.WHATSAPP, "big-video")

    (url,) = await parts.files.attachment_urls(
        entry, [parts.slack_file("tour.mp4", video)], conversation_id=None
    )

    (signed,) = parts.highlevel.signed_uploads.values()
    assert signed.puts == 1
    (upload,) = parts.highlevel.uploads.values()
    assert upload.url == url and upload.data == video


async def test_a_file_deleted_in_slack_fails_the_send_with_its_name(parts: Parts) -> None:
    kept = parts.slack_file("invoice.pdf", PDF)
    gone = parts.slack_file("old-quote.pdf", PDF)
    parts.slack.delete_file(gone.id)
    entry = await parts.entry(ADA_LOVELACE_ID, MessageChannel.SMS, "deleted")

    with pytest.raises(FileSendError) as raised:
        await parts.files.attachment_urls(entry, [kept, gone], conversation_id=None)

    assert raised.value.lasting
    assert "old-quote.pdf" in raised.value.reason and "deleted" in raised.value.reason
    # What was uploaded before stays kept: a resend or retry does not upload it again.
    assert list((await parts.store.outbox_uploads(entry.id)).keys()) == [kept.id]


async def test_a_type_highlevel_refuses_is_a_lasting_failure_naming_the_file(
    parts: Parts,
) -> None:
    # Named .pdf but declared as a program: HighLevel answers 415.
    disguised = parts.slack_file("invoice.pdf", b"MZ" + b"\x00" * 100, "application/x-msdownload")
    entry = await parts.entry(ADA_LOVELACE_ID, MessageChannel.SMS, "refused")

    with pytest.raises(FileSendError) as raised:
        await parts.files.attachment_urls(entry, [disguised], conversation_id=None)

    assert raised.value.lasting
    assert "invoice.pdf" in raised.value.reason and "type" in raised.value.reason
    assert parts.uploads() == []


async def test_the_bot_token_goes_only_to_slack(parts: Parts) -> None:
    reader = SlackFileReader(
        slack=OnePoster(SlackPoster(AsyncWebClient(token="x", base_url=parts.slack.api_url))),
        http=httpx.AsyncClient(),
        slack_api_url=parts.slack.api_url,
    )
    assert reader._trusted(parts.slack.api_url + "files-pri/T-F/a.pdf")
    assert reader._trusted("https://files.slack.com/files-pri/T-F/a.pdf")
    assert not reader._trusted("https://files.slack.com.evil.example/a.pdf")
    assert not reader._trusted("http://files.slack.com/a.pdf")
    assert not reader._trusted("https://example.com/a.pdf")
