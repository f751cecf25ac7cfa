"""The writes after an inbound message's Slack post: four store operations, or one.

A standalone script, not part of `make bench` (whose per-message CPU figures vary from run to
run by more than this difference on a shared 2-core machine). Run
`python -m bench.inbound_writes [--messages 1500 --rounds 3]`.

Once the bridge has posted a HighLevel message in its Slack thread, it records the post on
the message, what the thread learnt from it (conversation, channel), the customer's wait, and
the end of the inbound event. As separate operations that is `attach_slack_ts`,
`update_thread`, `mark_waiting` and `finish_inbound`: four transactions on SQLite, four round
trips on PostgreSQL. `Store.record_shown` writes the same in one. Each round times both ways
over the same number of messages, in turns, on SQLite (a file in a temporary folder) and on
PostgreSQL (a fresh schema, dropped at the end; skipped with one line when the server does
not answer), and prints this process's CPU per message (time.process_time: the store's
client side, not the PostgreSQL server) side by side.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from bench._postgres import configured_url, fresh_schema, probe
from storage import MessageDirection, Store, open_store, redact_url
from storage._inbox import WaitingChange

Way = Callable[[Store, int, int, int, int], Awaitable[object]]


async def separately(store: Store, thread_id: int, message_id: int, event_id: int, n: int) -> None:
    await store.attach_slack_ts(message_id, slack_channel_id="C1", slack_ts=f"1700000001.{n:06d}")
    await store.update_thread(thread_id, conversation_id="conv-1", channel_type="SMS")
    await store.mark_waiting(thread_id, time.time())
    await store.finish_inbound(event_id)


async def at_once(store: Store, thread_id: int, message_id: int, event_id: int, n: int) -> None:
    await store.record_shown(
        message_id,
        slack_channel_id="C1",
        slack_ts=f"1700000001.{n:06d}",
        thread_id=thread_id,
        waiting=WaitingChange.customer_wrote(time.time()),
        finishes=event_id,
        conversation_id="conv-1",
        channel_type="SMS",
    )


WAYS: dict[str, Way] = {"4 operations": separately, "record_shown": at_once}


async def _messages(store: Store, thread_id: int, first: int, count: int) -> list[tuple[int, int]]:
    """`count` claimed inbound events, each with its recorded message (not timed)."""
    made = []
    for n in range(first, first + count):
        stored = await store.enqueue_inbound(
            source="webhook",
            event_type="InboundMessage",
            conversation_key=f"loc-1:conv-{n}",
            payload="{}",
            dedupe_keys=[f"message:m{n}"],
            ttl_seconds=3600,
        )
        claimed = await store.claim_inbound()
        if stored is None or claimed is None:
            raise RuntimeError("a fresh event was not stored and claimed")
        record, _created = await store.record_message(
            direction=MessageDirection.INBOUND, thread_id=thread_id, ghl_message_id=f"m{n}"
        )
        made.append((record.id, claimed.id))
    return made


async def measure(url: str, messages: int, rounds: int) -> dict[str, list[float]]:
    """CPU microseconds per message of each way, one figure per round."""
    per_message: dict[str, list[float]] = {name: [] for name in WAYS}
    store = await open_store(url)
    try:
        thread = await store.upsert_thread(
            team_id="T1", channel_id="C1", location_id="loc-1", contact_id="c-1"
        )
        n = 0
        for _ in range(rounds):
            for name, way in WAYS.items():
                made = await _messages(store, thread.id, n, messages)
                started = time.process_time()
                for offset, (message_id, event_id) in enumerate(made):
                    await way(store, thread.id, message_id, event_id, n + offset)
                spent = time.process_time() - started
                per_message[name].append(1e6 * spent / messages)
                n += messages
    finally:
        await store.close()
    return per_message


def line(backend: str, figures: dict[str, list[float]]) -> str:
    cells = [
        f"{name} {statistics.median(values):6.0f} µs [{min(values):.0f}-{max(values):.0f}]"
        for name, values in figures.items()
    ]
    return f"{backend:<11} " + "   ".join(cells)


async def main_async(messages: int, rounds: int, postgres_url: str) -> None:
    print(f"CPU per inbound message, median [range] of {rounds} rounds of {messages} each:")
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{Path(folder) / 'bench.db'}"
        print(line("SQLite", await measure(url, messages, rounds)), flush=True)
    why = await probe(postgres_url)
    if why is not None:
        print(f"!!! PostgreSQL at {redact_url(postgres_url)} did not answer ({why}): skipped")
        return
    async with fresh_schema(postgres_url, "inbound_writes") as url:
        print(line("PostgreSQL", await measure(url, messages, rounds)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--messages", type=int, default=1500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--postgres", default=configured_url())
    args = parser.parse_args(argv)
    asyncio.run(main_async(args.messages, args.rounds, args.postgres))
    return 0


if __name__ == "__main__":
    sys.exit(main())
