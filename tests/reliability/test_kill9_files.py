"""`kill -9` of a real `ghl-bridge serve` while it uploads a send's files, then a restart on the
same SQLite file: each file reaches HighLevel once, and the customer gets one message carrying
all three (the send was certainly not made yet, so it goes out without asking anyone)."""

from __future__ import annotations

import asyncio
import os
import signal
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web

from bot.sandbox.highlevel import HighLevelSimulator
from bot.sandbox.slack import SlackDriver
from bot.sandbox.stack import AGENT_USER, SALES_CHANNEL, SANDBOX_SIGNING_SECRET
from tests.reliability._helpers import eventually, text_of
from tests.reliability.test_kill9 import BridgeProcess, _bridge_env, _simulators

UPLOAD_PATH = "/conversations/messages/upload"
PDF = b"%PDF-1.7\n" + b"i" * 4000
PHOTO_1 = b"\xff\xd8\xff\xe0" + b"1" * 6000
PHOTO_2 = b"\xff\xd8\xff\xe0" + b"2" * 6000


class KillAtSecondUpload:
    """Kills the bridge from inside the HighLevel simulator when its second upload arrives,
    before the simulator acts on it: the first file's URL is kept, the second never arrived."""

    def __init__(self) -> None:
        self.bridge: BridgeProcess | None = None
        self.seen = 0
        self.killed = asyncio.Event()

    @web.middleware
    async def middleware(
        self,
        request: web.Request,
        handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    ) -> web.StreamResponse:
        if request.method == "POST" and request.path == UPLOAD_PATH and self.bridge is not None:
            self.seen += 1
            if self.seen == 2:
                os.kill(self.bridge.pid, signal.SIGKILL)
                self.bridge = None
                self.killed.set()
                return web.Response(status=503)
        return await handler(request)


@pytest.mark.slow
async def test_kill_9_between_uploads_uploads_each_file_once_and_sends_once(
    tmp_path: Path,
) -> None:
    database = tmp_path / "bridge.sqlite3"
    killer = KillAtSecondUpload()
    highlevel = HighLevelSimulator()
    highlevel.app.middlewares.append(killer.middleware)
    async with _simulators(highlevel) as (slack, highlevel):
        contact = highlevel.add_contact(first_name="Files", phone="+14155553100")
        picked = [
            slack.add_file("quote.pdf", PDF, user=AGENT_USER).id,
            slack.add_file("kitchen.jpg", PHOTO_1, user=AGENT_USER).id,
            slack.add_file("bathroom.jpg", PHOTO_2, user=AGENT_USER).id,
        ]
        env = _bridge_env(slack, highlevel, database)
        first = BridgeProcess(env, tmp_path)
        url = await first.start()
        killer.bridge = first
        async with SlackDriver(f"{url}/slack/events", SANDBOX_SIGNING_SECRET, slack) as driver:
            opened = await driver.slash_command(
                "/sendsms", "", user_id=AGENT_USER, channel_id=SALES_CHANNEL
            )
            assert opened.status == 200
            view = (await eventually(lambda: slack.open_views(AGENT_USER)))[-1]
            answer = await driver.view_submission(
                view.id,
                user_id=AGENT_USER,
                values={
                    "recipient": {"recipient": "+14155553100"},
                    "message": {"message": "The photos and the quote, as promised."},
                    "files": {"files": picked},
                },
            )
            assert answer.status == 200 and (answer.json or {}).get("response_action") is None
        await asyncio.wait_for(killer.killed.wait(), 30)
        assert await first.reap() == -signal.SIGKILL

        second = BridgeProcess(env, tmp_path)
        await second.start()
        try:
            try:
                sends = await eventually(highlevel.sends_with_attachments, within=30.0)
            except AssertionError:
                print("\n".join([*first.lines[-30:], "----", *second.lines[-40:]]))
                raise

            def shown_sent() -> bool:
                posts = [m for m in slack.channel_messages(SALES_CHANNEL) if m.bot_id]
                return any("Sent" in text_of(m) or "Delivered" in text_of(m) for m in posts)

            await eventually(shown_sent, within=15.0)
        finally:
            await second.stop()

    (send,) = sends
    assert send.contact_id == contact.id
    by_name = Counter(upload.filename for upload in highlevel.uploads.values())
    assert by_name == {"quote.pdf": 1, "kitchen.jpg": 1, "bathroom.jpg": 1}
    served = {upload.url: upload.data for upload in highlevel.uploads.values()}
    assert [served[url] for url in send.attachments] == [PDF, PHOTO_1, PHOTO_2]
    assert len(highlevel.requests_to("POST", "/conversations/messages")) == 1
