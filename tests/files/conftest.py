"""The pieces of the inbound file path on real HTTP: both simulators, a SQLite store, a poster
and a HighLevel client, for tests of InboundFiles and of the worker with it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from pydantic import SecretStr
from slack_sdk.web.async_client import AsyncWebClient

from bot.files.fetch import AttachmentFetcher
from bot.files.inbound import InboundFiles
from bot.highlevel import HighLevelClient
from bot.posting.pacing import ChannelPacer
from bot.posting.poster import OnePoster, SlackPoster
from bot.sandbox.highlevel import HighLevelSimulator
from bot.sandbox.slack import SlackFile, SlackMessage, SlackSimulator
from bot.tenancy.accounts import SubAccounts
from storage import Store, open_store

INBOX = "C0INBOX"


@dataclass
class Clock:
    now: float = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class World:
    highlevel: HighLevelSimulator
    slack: SlackSimulator
    store: Store
    poster: SlackPoster
    client: HighLevelClient
    accounts: SubAccounts
    clock: Clock = field(default_factory=Clock)

    def inbound_files(
        self,
        *,
        max_bytes: int = 1024 * 1024,
        checks_after: Sequence[float] | None = (2.0, 5.0, 15.0),
        timeout_seconds: float = 5.0,
    ) -> InboundFiles:
        fetcher = AttachmentFetcher(
            max_bytes=max_bytes,
            trusted_base_url=self.highlevel.base_url,
            timeout_seconds=timeout_seconds,
        )
        return InboundFiles(
            store=self.store,
            slack=OnePoster(self.poster),
            fetcher=fetcher,
            accounts=self.accounts,
            checks_after=checks_after,
            clock=self.clock,
        )

    def customer_file(self, name: str, data: bytes, content_type: str = "image/jpeg") -> str:
        """A file a customer sent, served by the HighLevel simulator; its URL."""
        return self.highlevel.store_file(
            name, data, content_type, origin=self.highlevel.base_url, via="customer"
        ).url

    async def new_thread(self) -> str:
        return await self.poster.post(INBOX, "A conversation", [])

    def files_in(self, thread_ts: str) -> list[SlackFile]:
        return [
            file
            for file in self.slack.files()
            if any(share.thread_ts == thread_ts for share in file.shares)
        ]

    def replies(self, thread_ts: str) -> list[SlackMessage]:
        return [m for m in self.slack.thread(INBOX, thread_ts) if m.ts != thread_ts]


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    async with (
        HighLevelSimulator() as highlevel,
        SlackSimulator(post_rate_per_second=1000.0, post_burst=1000) as slack,
        await open_store(f"sqlite:///{tmp_path / 'bridge.sqlite3'}") as store,
    ):
        slack.add_channel(INBOX, "inbox")
        client = HighLevelClient(
            token=SecretStr(highlevel.token),
            location_id=highlevel.location_id,
            base_url=highlevel.base_url,
        )
        poster = SlackPoster(
            AsyncWebClient(token=slack.bot_token, base_url=slack.api_url),
            ChannelPacer(rate_per_second=1000.0, burst=1000),
        )
        await store.save_location(highlevel.location_id, auth="pit")
        accounts = SubAccounts(store, lambda _location: client)
        try:
            yield World(highlevel, slack, store, poster, client, accounts)
        finally:
            await client.aclose()
