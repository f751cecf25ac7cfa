"""Files in the Slack simulator: slack_sdk's files_upload_v2, files.info, private downloads with
the bot token, workspaces kept apart, file_input state and messages that carry files."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from slack_sdk.web import WebClient
from slack_sdk.web.async_client import AsyncWebClient

from bot.sandbox.slack import FILE_DOWNLOAD, FILE_UPLOAD, SlackDriver, SlackSimulator
from tests.sandbox_slack._support import ALICE, GENERAL, OUTSIDE, modal, refused

ACME = "T0ACME"
CAROL = "U0CAROL"
SALES = "C0SALES"
SECRET = "sandbox-signing-secret"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
PDF = b"%PDF-1.7\n" + b"x" * 200


@pytest.fixture
def acme(sim: SlackSimulator) -> AsyncWebClient:
    workspace = sim.add_workspace(ACME, "Acme Corp")
    workspace.add_user(CAROL, "carol", "Carol Customer")
    workspace.add_channel(SALES, "sales")
    return AsyncWebClient(token=sim.bot_token_for(ACME), base_url=sim.api_url)


@pytest.fixture
async def inbox() -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    """A real HTTP app that keeps every payload Slack sent it and answers 200."""
    payloads: list[dict[str, Any]] = []

    async def receive(request: web.Request) -> web.Response:
        body = await request.text()
        if request.content_type == "application/json":
            payloads.append(json.loads(body))
        else:
            payloads.append(json.loads(parse_qs(body)["payload"][0]))
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/slack/events", receive)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("/slack/events")), payloads
    finally:
        await server.close()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# ---------------------------------------------------------------- files_upload_v2


async def test_files_upload_v2_into_a_thread(sim: SlackSimulator, client: AsyncWebClient) -> None:
    root = await client.chat_postMessage(channel=GENERAL, text="Conversation with Jane")

    sent = await client.files_upload_v2(
        file=PDF,
        filename="invoice.pdf",
        channel=GENERAL,
        thread_ts=root["ts"],
        initial_comment="Jane sent a file",
    )

    file_id = sent["file"]["id"]
    assert sent["file"]["name"] == "invoice.pdf" and sent["file"]["size"] == len(PDF)
    [top, reply] = sim.thread(GENERAL, root["ts"])
    assert reply.text == "Jane sent a file" and reply.user == sim.bot_user_id
    assert reply.files is not None and [f["id"] for f in reply.files] == [file_id]
    assert [m.ts for m in sim.channel_messages(GENERAL)] == [top.ts]  # a reply, not a new post

    info = await client.files_info(file=file_id)
    assert info["file"]["filetype"] == "pdf" and info["file"]["mimetype"] == "application/pdf"
    [share] = info["file"]["shares"]["public"][GENERAL]
    assert share["ts"] == reply.ts and share["thread_ts"] == root["ts"]
    assert info["file"]["channels"] == [GENERAL]

    # The sequence slack_sdk runs, recorded like any call, and never the bytes.
    methods = [c.method for c in sim.calls]
    assert methods[-4:-1] == [
        "files.getUploadURLExternal",
        FILE_UPLOAD,
        "files.completeUploadExternal",
    ]
    [upload] = sim.calls_to(FILE_UPLOAD)
    assert upload.ok and upload.transport == "raw"
    assert dict(upload.args) == {"file": file_id, "bytes": str(len(PDF))}
    assert sim.calls_to("files.getUploadURLExternal")[0].args["length"] == str(len(PDF))
    assert all("%PDF" not in json.dumps(dict(c.args)) for c in sim.calls)


async def test_the_blocking_client_uploads_the_same_way(sim: SlackSimulator) -> None:
    # slack_sdk's WebClient POSTs the bytes with urllib (a form content type, raw body).
    blocking = WebClient(token=sim.bot_token, base_url=sim.api_url)
    sent = await asyncio.to_thread(
        blocking.files_upload_v2, content=PDF, filename="a.pdf", channel=GENERAL
    )
    stored = sim.file(sent["file"]["id"])
    assert stored is not None and stored.data == PDF
    assert sim.channel_messages(GENERAL)[-1].files is not None


async def test_upload_without_a_channel_stays_private(
    sim: SlackSimulator, client: AsyncWebClient
) -> None:
    sent = await client.files_upload_v2(content="notes", filename="notes.txt")

    assert sim.channel_messages(GENERAL) == []
    info = await client.files_info(file=sent["file"]["id"])
    assert info["file"]["channels"] == [] and "shares" not in info["file"]
    assert info["file"]["is_public"] is False


async def test_upload_errors_as_slack_answers_them(
    sim: SlackSimulator, client: AsyncWebClient
) -> None:
    assert (await refused(client.api_call("files.getUploadURLExternal", params={"length": 3})))[
        "error"
    ] == "invalid_arguments"

    async def ticket(length: int) -> tuple[str, str]:
        got = await client.files_getUploadURLExternal(filename="a.txt", length=length)
        return got["upload_url"], got["file_id"]

    # Never uploaded: Slack cannot find it, and files.info does not show it either.
    _, never = await ticket(3)
    assert (await refused(client.files_completeUploadExternal(files=[{"id": never}])))[
        "error"
    ] == "file_not_found"
    assert (await refused(client.files_info(file=never)))["error"] == "file_not_found"

    async with httpx.AsyncClient() as http:
        # Fewer bytes than the declared length.
        url, short = await ticket(10)
        assert (await http.post(url, content=b"abc")).text == "OK - 3"
        assert (await refused(client.files_completeUploadExternal(files=[{"id": short}])))[
            "error"
        ] == "file_upload_size_mismatch"

        url, good = await ticket(3)
        await http.post(url, content=b"abc")
        for channel, error in [
            (OUTSIDE, "not_in_channel"),
            ("C0NOPE", "channel_not_found"),
            (ALICE, "invalid_arguments"),  # a user id is not a channel id
        ]:
            failed = await refused(
                client.files_completeUploadExternal(files=[{"id": good}], channel_id=channel)
            )
            assert failed["error"] == error
        assert sim.channel_messages(OUTSIDE) == []  # nothing shared by a refused call
        await client.files_completeUploadExternal(files=[{"id": good}], channel_id=GENERAL)
        # Completed once; a second completion, or another upload, finds nothing.
        assert (await refused(client.files_completeUploadExternal(files=[{"id": good}])))[
            "error"
        ] == "file_not_found"
        assert (await http.post(url, content=b"abc")).status_code == 404


async def test_the_upload_url_takes_multipart_too(
    sim: SlackSimulator, client: AsyncWebClient
) -> None:
    got = await client.files_getUploadURLExternal(filename="pic.png", length=len(PNG))
    async with httpx.AsyncClient() as http:
        answer = await http.post(got["upload_url"], files={"filename": ("pic.png", PNG)})
    assert answer.status_code == 200
    done = await client.files_completeUploadExternal(
        files=[{"id": got["file_id"], "title": "A picture"}], channel_id=GENERAL
    )
    assert done["files"][0]["title"] == "A picture" and "thumb_360" in done["files"][0]
    stored = sim.file(got["file_id"])
    assert stored is not None and stored.data == PNG


async def test_file_methods_need_their_scopes() -> None:
    scopes = ("chat:write", "files:read")
    async with SlackSimulator(granted_scopes=scopes) as narrow:
        client = AsyncWebClient(token=narrow.bot_token, base_url=narrow.api_url)
        failed = await refused(client.files_getUploadURLExternal(filename="a.txt", length=1))
    assert failed["error"] == "missing_scope" and failed["needed"] == "files:write"


# ---------------------------------------------------------------- private download


async def test_private_download_needs_the_workspaces_bot_token(
    sim: SlackSimulator, acme: AsyncWebClient
) -> None:
    photo = sim.add_file("photo.png", PNG, user=ALICE)
    shown = sim.file_api(photo)
    async with httpx.AsyncClient() as http:
        got = await http.get(shown["url_private_download"], headers=bearer(sim.bot_token))
        assert got.status_code == 200 and got.content == PNG
        assert got.headers["content-type"] == "image/png"
        assert "attachment" in got.headers["content-disposition"]
        thumb = await http.get(shown["thumb_360"], headers=bearer(sim.bot_token))
        assert thumb.status_code == 200

        # No token, or another workspace's: Slack's sign-in page, never the file.
        for headers in ({}, bearer(sim.bot_token_for(ACME)), bearer("xoxb-unknown")):
            refused_get = await http.get(shown["url_private"], headers=headers)
            assert refused_get.status_code == 302
            assert "/signin?redir=" in refused_get.headers["location"]
        page = await http.get(shown["url_private"], follow_redirects=True)
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert PNG not in page.content

        sim.delete_file(photo.id)
        gone = await http.get(shown["url_private"], headers=bearer(sim.bot_token))
        assert gone.status_code == 404
    assert [(c.http_status, c.error) for c in sim.calls_to(FILE_DOWNLOAD)][-1] == (
        404,
        "file_not_found",
    )


async def test_files_are_private_to_their_workspace(
    sim: SlackSimulator, client: AsyncWebClient, acme: AsyncWebClient
) -> None:
    mine = sim.add_file("contract.pdf", PDF, user=ALICE)
    assert (await client.files_info(file=mine.id))["file"]["id"] == mine.id
    assert (await refused(acme.files_info(file=mine.id)))["error"] == "file_not_found"

    # Another workspace cannot complete (share) an upload it did not start.
    got = await client.files_getUploadURLExternal(filename="a.txt", length=1)
    async with httpx.AsyncClient() as http:
        await http.post(got["upload_url"], content=b"a")
    failed = await refused(
        acme.files_completeUploadExternal(files=[{"id": got["file_id"]}], channel_id=SALES)
    )
    assert failed["error"] == "file_not_found"


async def test_download_faults_make_it_fail_or_slow(sim: SlackSimulator) -> None:
    doc = sim.file_api(sim.add_file("a.pdf", PDF, user=ALICE))
    async with httpx.AsyncClient() as http:
        sim.faults.inject(FILE_DOWNLOAD, status=503, error="service_unavailable")
        failed = await http.get(doc["url_private"], headers=bearer(sim.bot_token))
        assert failed.status_code == 503
        sim.faults.delay_next(FILE_DOWNLOAD, 1.0)
        with pytest.raises(httpx.ReadTimeout):
            await http.get(doc["url_private"], headers=bearer(sim.bot_token), timeout=0.1)
        after = await http.get(doc["url_private"], headers=bearer(sim.bot_token))
        assert after.status_code == 200 and after.content == PDF


async def test_a_deleted_file_is_a_tombstone(sim: SlackSimulator, client: AsyncWebClient) -> None:
    doc = sim.add_file("a.pdf", PDF, user=ALICE)
    message = sim.post_as_user(GENERAL, ALICE, "here", files=[doc])
    sim.delete_file(doc.id)
    assert (await refused(client.files_info(file=doc.id)))["error"] == "file_deleted"
    assert message.files == [{"id": doc.id, "mode": "tombstone"}]


# ---------------------------------------------------------------- people's files


async def test_a_persons_message_with_files_reaches_the_app_with_them(
    sim: SlackSimulator, client: AsyncWebClient, inbox: tuple[str, list[dict[str, Any]]]
) -> None:
    url, payloads = inbox
    photo = sim.add_file("IMG_0001.jpg", PNG, "image/jpeg", user=ALICE)
    doc = sim.add_file("quote.pdf", PDF, user=ALICE)
    message = sim.post_as_user(GENERAL, ALICE, "see attached", files=[photo, doc.id])

    async with SlackDriver(url, SECRET, sim) as driver:
        await driver.message_action(
            "reply_via_highlevel", user_id=ALICE, channel_id=GENERAL, message_ts=message.ts
        )
        await driver.user_message(GENERAL, ALICE, "and one more", files=[doc])

    shortcut, event = payloads
    files = shortcut["message"]["files"]
    assert [f["id"] for f in files] == [photo.id, doc.id]
    assert files[0]["filetype"] == "jpg" and "thumb_360" in files[0]
    assert files[1]["url_private_download"].startswith(sim.base_url)
    assert event["event"]["subtype"] == "file_share"
    assert event["event"]["files"][0]["id"] == doc.id

    history = await client.conversations_history(channel=GENERAL)
    assert [f["id"] for f in history["messages"][-1]["files"]] == [photo.id, doc.id]
    shares = (await client.files_info(file=doc.id))["file"]["shares"]["public"][GENERAL]
    assert len(shares) == 2 and {s["share_user_id"] for s in shares} == {ALICE}


def file_modal(element: dict[str, Any]) -> dict[str, Any]:
    block = {
        "type": "input",
        "block_id": "attach",
        "optional": True,
        "label": {"type": "plain_text", "text": "Files"},
        "element": {"type": "file_input", "action_id": "files", **element},
    }
    return modal(blocks=[block])


async def test_file_input_submission_carries_the_picked_files(
    sim: SlackSimulator, client: AsyncWebClient, inbox: tuple[str, list[dict[str, Any]]]
) -> None:
    url, payloads = inbox
    opened = await client.views_open(
        trigger_id=sim.issue_trigger_id(ALICE),
        view=file_modal({"max_files": 2, "filetypes": ["pdf", "png"]}),
    )
    view_id = opened["view"]["id"]
    doc = sim.add_file("quote.pdf", PDF, user=ALICE)
    photo = sim.add_file("photo.png", PNG, user=ALICE)
    notes = sim.add_file("notes.txt", b"hi", user=ALICE)

    async with SlackDriver(url, SECRET, sim) as driver:
        with pytest.raises(ValueError, match="2 at most"):
            await driver.view_submission(
                view_id, user_id=ALICE, values={"attach": {"files": [doc, photo, doc]}}
            )
        with pytest.raises(ValueError, match=r"notes\.txt"):
            await driver.view_submission(
                view_id, user_id=ALICE, values={"attach": {"files": [notes]}}
            )
        await driver.view_submission(
            view_id, user_id=ALICE, values={"attach": {"files": [doc.id, photo]}}
        )

    [submitted] = payloads
    entry = submitted["view"]["state"]["values"]["attach"]["files"]
    assert entry["type"] == "file_input"
    assert [f["id"] for f in entry["files"]] == [doc.id, photo.id]
    assert entry["files"][0]["url_private_download"] == sim.file_api(doc)["url_private_download"]


async def test_file_input_is_validated_like_slack(
    sim: SlackSimulator, client: AsyncWebClient
) -> None:
    for element in ({"max_files": 11}, {"max_files": 0}, {"filetypes": "pdf"}):
        failed = await refused(
            client.views_open(trigger_id=sim.issue_trigger_id(ALICE), view=file_modal(element))
        )
        assert failed["error"] == "invalid_arguments", element
    misplaced = modal(
        blocks=[{"type": "actions", "elements": [{"type": "file_input", "action_id": "f"}]}]
    )
    failed = await refused(
        client.views_open(trigger_id=sim.issue_trigger_id(ALICE), view=misplaced)
    )
    assert "only allowed in input blocks" in failed["response_metadata"]["messages"][0]

    opened = await client.views_open(
        trigger_id=sim.issue_trigger_id(ALICE), view=file_modal({"max_files": 10})
    )
    updated = await refused(
        client.views_update(view_id=opened["view"]["id"], view=file_modal({"max_files": 12}))
    )
    assert updated["error"] == "invalid_arguments"
