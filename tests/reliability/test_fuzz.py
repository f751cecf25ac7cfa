"""Whatever a person types, and whatever a (correctly signed) webhook carries: never a 5xx, never
an unhandled exception, always a clear answer to the person, and nothing half-stored.

One bridge serves the whole module, so each example costs a request, not a start-up."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.compose import ComposeContext
from bot.sandbox.highlevel import ADA_LOVELACE_ID, HighLevelSimulator
from bot.sandbox.slack import SlackSimulator
from bot.sandbox.stack import AGENT_USER, INBOX_CHANNEL, SALES_CHANNEL, SandboxStack
from bot.ui.compose_builder import (
    COMPOSE_CALLBACK_ID,
)
from bot.ui.compose_state import (
    encode_context,
)
from storage import InboundState, OutboxState, SqliteStore
from tests.reliability._helpers import (
    all_posts,
    eventually,
    inbound_payload,
    sign_ed25519,
    signed_body,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")

FUZZ = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    database=None,  # the same examples every run: no example database left in the tree
    derandomize=True,
)

HOSTILE = [
    "'; DROP TABLE outbox; --",
    '" OR 1=1 --',
    "Robert'); DELETE FROM messages WHERE ('1'='1",
    "<!channel> <!here> <@U0AGENT> <#C0SALES>",
    "<https://evil.example|click me> *bold* _it_ ~s~ `code` ```block```",
    '{"blocks":[{"type":"section","text":{"type":"mrkdwn","text":"*pwned*"}}]}',
    '"}]}, {"type": "actions", "elements": [{"type": "button"}]}',
    "\x00\x01\x02\x1b[31mred\x1b[0m\x7f",
    "\u202e\u200b\ufeff\u2028\u2029",
    "😀" * 50 + "👩‍👩‍👧‍👦",
    "\U0001d518\U0001d52b\U0001d526 \u210c\U0001d522\U0001d52f\U0001d522",  # Fraktur letters
    "%s %d %(name)s {0} {message}",
    "../../etc/passwd",
    "x" * 10_000,
    "+1 415 555 0100 " + "y" * 10_000,
]
TEXT = st.text(st.characters(codec="utf-8"), max_size=300)


class Recorder(logging.Handler):
    """Keeps every record at WARNING and above that the module's bridge logs."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def failures(self) -> list[str]:
        """ERROR records and any record with a traceback: what must never appear."""
        return [
            f"{r.levelname} {r.name}: {r.getMessage()[:300]}"
            for r in self.records
            if r.levelno >= logging.ERROR or r.exc_info
        ]


@dataclass
class Fuzzed:
    stack: SandboxStack
    key: Ed25519PrivateKey
    logs: Recorder
    http: httpx.AsyncClient


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Fuzzed]:
    key = Ed25519PrivateKey.generate()
    highlevel = HighLevelSimulator(signing_key=key, rate_limit_max=10_000)
    slack = SlackSimulator(post_rate_per_second=1000.0, post_burst=1000)
    logs = Recorder()
    logging.getLogger().addHandler(logs)
    database = tmp_path_factory.mktemp("fuzz") / "bridge.sqlite3"
    try:
        async with (
            SandboxStack(
                database,
                highlevel=highlevel,
                slack=slack,
                settings_overrides={"slack_post_rate": 500.0},
            ) as stack,
            httpx.AsyncClient(timeout=30) as http,
        ):
            yield Fuzzed(stack, key, logs, http)
            await _nothing_half_stored(stack, database)
    finally:
        logging.getLogger().removeHandler(logs)
    assert logs.failures() == []


async def _nothing_half_stored(stack: SandboxStack, database: Path) -> None:
    """Every queued send and stored event is carried through to an end."""

    async def settled() -> bool:
        async with SqliteStore(database) as store:
            busy = await store.list_outbox(OutboxState.PENDING) + await store.list_outbox(
                OutboxState.SENDING
            )
            waiting = await store.count_inbound(InboundState.PENDING) + await store.count_inbound(
                InboundState.PROCESSING
            )
        return not busy and not waiting

    deadline = time.monotonic() + 30
    while not await settled():
        assert time.monotonic() < deadline, "work left unfinished"
        await asyncio.sleep(0.2)
    async with SqliteStore(database) as store:
        entries = await store.list_outbox(limit=10_000)
        assert await store.count_inbound(InboundState.FAILED) == 0
    assert all(entry.slack_ts is not None for entry in entries)  # each send has its post


def _told(stack: SandboxStack) -> Callable[[], int]:
    """A counter of everything that tells the agent something: notices, modals, posts."""

    def count() -> int:
        slack = stack.slack
        return (
            len(slack.ephemerals(user=AGENT_USER))
            + len(slack.calls_to("views.open"))
            + len(all_posts(slack, [SALES_CHANNEL]))
        )

    return count


@given(text=st.one_of(TEXT, st.sampled_from(HOSTILE), TEXT.map(lambda t: f"+1 415 555 0100 {t}")))
@FUZZ
async def test_slash_command_text(fuzzed: Fuzzed, text: str) -> None:
    stack = fuzzed.stack
    told = _told(stack)
    before = told()
    result = await stack.driver.slash_command(
        "/sendsms", text, user_id=AGENT_USER, channel_id=SALES_CHANNEL
    )
    assert result.status == 200, result.text
    assert result.elapsed_seconds < 3.0
    answer = result.json.get("text") if isinstance(result.json, dict) else None
    if not answer:
        # Acked silently: a notice, the composer or the send's post follows.
        await eventually(lambda: told() > before, within=5)
    assert fuzzed.logs.failures() == []


@given(
    recipient=st.one_of(TEXT, st.sampled_from(["+14155550100", "ada@example.com", *HOSTILE])),
    message=st.one_of(TEXT, st.sampled_from(HOSTILE)),
    channel=st.one_of(st.sampled_from(["SMS", "Email", "WhatsApp", "GMB"]), TEXT),
    subject=TEXT,
    cc=st.one_of(TEXT, st.sampled_from(["a@example.com, b@example.org", "nope", ""])),
    schedule=st.one_of(st.none(), st.integers(), st.floats(allow_nan=True), TEXT),
    metadata=st.one_of(
        st.just(encode_context(ComposeContext(channel_id=SALES_CHANNEL))),
        TEXT,
        st.sampled_from(['{"c": 5}', '{"c": "C0SALES", "r": {"i": "x"}}', "[]", "null"]),
    ),
)
@FUZZ
async def test_composer_values(
    fuzzed: Fuzzed,
    recipient: str,
    message: str,
    channel: str,
    subject: str,
    cc: str,
    schedule: Any,
    metadata: str,
) -> None:
    stack = fuzzed.stack
    told = _told(stack)
    before = told()
    values: dict[str, dict[str, Any]] = {
        "recipient": {"recipient": recipient},
        "message": {"message": message},
        "subject": {"subject": subject},
        "cc": {"cc": cc},
        "channel": {"channel": {"type": "static_select", "selected_option": {"value": channel}}},
        "schedule": {
            "schedule": {"type": "datetimepicker", "selected_date_time": schedule},
        },
    }
    result = await stack.driver.view_submission(
        user_id=AGENT_USER,
        callback_id=COMPOSE_CALLBACK_ID,
        private_metadata=metadata,
        values=values,
    )
    assert result.status == 200, result.text
    assert result.elapsed_seconds < 3.0
    answer = result.json if isinstance(result.json, dict) else {}
    if answer.get("response_action") == "errors":
        assert answer["errors"] and all(isinstance(v, str) and v for v in answer["errors"].values())
    else:
        await eventually(lambda: told() > before, within=5)
    assert fuzzed.logs.failures() == []


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | TEXT,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(TEXT, inner, max_size=5),
    max_leaves=20,
)
FIELDS = [
    "type",
    "contactId",
    "conversationId",
    "messageId",
    "messageType",
    "direction",
    "body",
    "status",
    "attachments",
    "dateAdded",
    "source",
    "userId",
    "error",
    "emailMessageId",
    "threadId",
    "subject",
    "from",
    "to",
    "cc",
    "locationId",
]


@given(
    changes=st.dictionaries(st.sampled_from(FIELDS), JSON_VALUES, max_size=6),
    removed=st.sets(st.sampled_from(FIELDS), max_size=4),
    huge=st.sampled_from([None, "attachments", "to", "cc", "body"]),
    contact=st.sampled_from([ADA_LOVELACE_ID, "no-such-contact"]),
)
@FUZZ
async def test_webhook_payloads(
    fuzzed: Fuzzed,
    changes: dict[str, Any],
    removed: set[str],
    huge: str | None,
    contact: str,
) -> None:
    stack = fuzzed.stack
    payload = inbound_payload(
        location_id=stack.highlevel.location_id,
        contact_id=contact,
        conversation_id=f"fuzz-{contact}",
        text=f"fuzz {uuid.uuid4().hex[:8]}",
    )
    payload.update(changes)
    for name in removed:
        payload.pop(name, None)
    if huge == "body":
        payload["body"] = "z" * 100_000
    elif huge is not None:
        payload[huge] = [f"https://example.com/{i}" for i in range(20_000)]
    webhook = signed_body(fuzzed.key, payload)
    response = await fuzzed.http.post(
        f"{stack.bridge_url}/ghl/webhooks", content=webhook.body, headers=webhook.headers
    )
    assert response.status_code in (200, 401, 413), response.text
    assert fuzzed.logs.failures() == []


# Ids as JSON lets HighLevel sign them: lone UTF-16 surrogates (`"\ud800"`, which json.loads
# accepts but UTF-8 cannot encode), control characters, very long strings, and non-strings.
ID_CHARACTERS = st.one_of(
    st.characters(codec="utf-8"),
    st.characters(categories=["Cs"]),  # lone surrogates
    st.characters(categories=["Cc"]),  # control characters, NUL included
)
ID_TEXT = st.text(ID_CHARACTERS, max_size=40)
IDS = st.one_of(
    ID_TEXT,
    st.tuples(ID_TEXT, st.characters(categories=["Cs"]), ID_TEXT).map("".join),
    st.tuples(st.text(ID_CHARACTERS, min_size=1, max_size=3), st.integers(1_000, 20_000)).map(
        lambda repeated: repeated[0] * repeated[1]
    ),
    JSON_VALUES,
)
ID_FIELDS = [
    "webhookId",
    "messageId",
    "contactId",
    "conversationId",
    "emailMessageId",
    "threadId",
    "userId",
]


@given(
    ids=st.dictionaries(st.sampled_from(ID_FIELDS), IDS, min_size=1, max_size=4),
    text=st.one_of(TEXT, st.tuples(TEXT, st.characters(categories=["Cs"])).map("".join)),
)
@FUZZ
async def test_webhook_ids(fuzzed: Fuzzed, ids: dict[str, Any], text: str) -> None:
    stack = fuzzed.stack
    payload = inbound_payload(
        location_id=stack.highlevel.location_id,
        contact_id=ADA_LOVELACE_ID,
        conversation_id=f"fuzz-ids-{ADA_LOVELACE_ID}",
        text=text,
    )
    payload.update(ids)
    webhook = signed_body(fuzzed.key, payload)  # json.dumps escapes a lone surrogate as \ud800
    response = await fuzzed.http.post(
        f"{stack.bridge_url}/ghl/webhooks", content=webhook.body, headers=webhook.headers
    )
    assert response.status_code in (200, 401, 413), response.text
    assert fuzzed.logs.failures() == []


@given(body=st.one_of(JSON_VALUES.map(json.dumps), st.binary(max_size=200)))
@FUZZ
async def test_webhook_bodies_that_are_not_objects(fuzzed: Fuzzed, body: str | bytes) -> None:
    raw = body.encode() if isinstance(body, str) else body
    headers = {"content-type": "application/json", "x-ghl-signature": sign_ed25519(fuzzed.key, raw)}
    response = await fuzzed.http.post(
        f"{fuzzed.stack.bridge_url}/ghl/webhooks", content=raw, headers=headers
    )
    assert response.status_code in (200, 401), response.text
    assert fuzzed.logs.failures() == []


async def test_inbox_shows_what_the_fuzzed_webhooks_stored(fuzzed: Fuzzed) -> None:
    # Runs last in the module: whatever the fuzzed webhooks stored has been shown (or dropped
    # on purpose), and nothing is stuck; the module fixture's teardown checks the rest.
    async def quiet() -> bool:
        async with SqliteStore(fuzzed.stack.database_path) as store:
            return (
                await store.count_inbound(InboundState.PENDING)
                + await store.count_inbound(InboundState.PROCESSING)
                == 0
            )

    deadline = time.monotonic() + 30
    while not await quiet():
        assert time.monotonic() < deadline
        await asyncio.sleep(0.2)
    assert all_posts(fuzzed.stack.slack, [INBOX_CHANNEL, SALES_CHANNEL])
    assert fuzzed.logs.failures() == []
