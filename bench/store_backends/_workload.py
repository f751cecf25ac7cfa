"""The operations timed: webhooks ingested and sends made, in rounds of slices."""

from __future__ import annotations

import gc
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bench.store_backends._common import (
    CHANNEL_ID,
    CONTACTS,
    DEDUPE_TTL,
    LOCATION_ID,
    SLACK_USER_ID,
    TEAM_ID,
    _BenchStore,
)
from storage import OutboxState

if TYPE_CHECKING:
    from bench.store_backends._variants import Variant

# ------------------------------------------------------------------------------ workload


def _contact(index: int) -> str:
    return f"ct{index % CONTACTS:018d}"


_BODY = (
    "Hi, this is Dana from the Riverside office. Following up on the quote we sent last week"
    " for the kitchen renovation: the cabinets you picked are back in stock and we could"
    " start on the 14th. Could you confirm the measurements of the north wall, and whether"
    " the old tiles stay? Reply here or call us at the office, whichever suits you best."
)


def _webhook(tag: str, index: int) -> dict[str, Any]:
    """An InboundMessage webhook as HighLevel sends it (about 1 kB of JSON)."""
    contact = _contact(index)
    return {
        "type": "InboundMessage",
        "locationId": LOCATION_ID,
        "attachments": [],
        "body": _BODY,
        "contactId": contact,
        "conversationId": f"cv{contact}",
        "dateAdded": "2025-03-14T09:26:53.589Z",
        "direction": "inbound",
        "messageType": "SMS",
        "contentType": "text/plain",
        "status": "delivered",
        "messageId": f"msg-{tag}-{index:08d}",
        "webhookId": f"wh-{uuid.uuid5(uuid.NAMESPACE_URL, f'{tag}/{index}')}",
        "timestamp": "2025-03-14T09:26:54.102Z",
        "source": "app",
        "userId": None,
        "conversationProviderId": None,
    }


@dataclass(frozen=True, slots=True)
class Timing:
    wall: float
    cpu: float


@dataclass(frozen=True, slots=True)
class Sample:
    ops_per_second: float
    cpu_us_per_op: float


async def ingest(store: _BenchStore, tag: str, start: int, count: int) -> Timing:
    """Webhooks `start` to `start + count` of `tag`, each unique, through enqueue_inbound."""
    events = [_webhook(tag, index) for index in range(start, start + count)]
    cpu, wall = time.process_time(), time.perf_counter()
    for event in events:
        stored = await store.enqueue_inbound(
            source="webhook",
            event_type="InboundMessage",
            conversation_key=f"{LOCATION_ID}:{event['contactId']}",
            payload=event,
            dedupe_keys=(f"webhook:{event['webhookId']}", f"message:{event['messageId']}"),
            ttl_seconds=DEDUPE_TTL,
        )
        if stored is None:
            raise RuntimeError(f"unique event {event['messageId']} was taken for a repeat")
    return Timing(wall=time.perf_counter() - wall, cpu=time.process_time() - cpu)


async def outbound(
    store: _BenchStore, tag: str, start: int, count: int, threads: Sequence[int]
) -> Timing:
    """Sends `start` to `start + count` of `tag`, each enqueued, claimed and marked sent."""
    cpu, wall = time.process_time(), time.perf_counter()
    for index in range(start, start + count):
        contact = _contact(index)
        entry, created = await store.enqueue(
            idempotency_key=f"send-{tag}-{index:08d}",
            team_id=TEAM_ID,
            channel_id=CHANNEL_ID,
            slack_user_id=SLACK_USER_ID,
            location_id=LOCATION_ID,
            contact_id=contact,
            message_type="SMS",
            payload={"type": "SMS", "contactId": contact, "message": _BODY[:160]},
            thread_id=threads[index % CONTACTS],
        )
        claimed = await store.claim_next()
        if not created or claimed is None or claimed.id != entry.id:
            raise RuntimeError(f"send {entry.id} was not the one claimed ({claimed})")
        sent = await store.mark_sent(
            claimed.id, conversation_id=f"cv{contact}", ghl_message_id=f"gm-{tag}-{index}"
        )
        if sent.state is not OutboxState.SENT:
            raise RuntimeError(f"send {sent.id} is {sent.state} after mark_sent")
    return Timing(wall=time.perf_counter() - wall, cpu=time.process_time() - cpu)


async def timed_round(
    path: str, all_variants: Sequence[Variant], round_index: int, total: int, slices: int
) -> dict[str, Sample]:
    """`total` operations of `path` per variant, in slices taken by each variant in turn.

    Slicing keeps every variant under the same conditions: the machine is shared, and a load
    that comes and goes over seconds would otherwise favour whichever ran while it was away.
    """
    wall = dict.fromkeys((variant.key for variant in all_variants), 0.0)
    cpu = dict.fromkeys(wall, 0.0)
    size = -(-total // slices)
    gc.collect()
    for slice_index, start in enumerate(range(0, total, size)):
        count = min(size, total - start)
        turn = (round_index + slice_index) % len(all_variants)
        for variant in [*all_variants[turn:], *all_variants[:turn]]:
            tag = f"r{round_index}-{variant.key}"
            if path == "ingest":
                timing = await ingest(variant.store, tag, start, count)
            else:
                timing = await outbound(variant.store, tag, start, count, variant.threads)
            wall[variant.key] += timing.wall
            cpu[variant.key] += timing.cpu
    return {key: Sample(total / wall[key], cpu[key] / total * 1e6) for key in wall}


async def check_dedupe(store: _BenchStore, tag: str) -> None:
    """A repeated webhook is refused: the look-up each variant times does its work."""
    event = _webhook(tag, 0)
    again = await store.enqueue_inbound(
        source="webhook",
        event_type="InboundMessage",
        conversation_key=f"{LOCATION_ID}:{event['contactId']}",
        payload=event,
        dedupe_keys=(f"webhook:{event['webhookId']}", f"message:{event['messageId']}"),
        ttl_seconds=DEDUPE_TTL,
    )
    if again is not None:
        raise RuntimeError(f"{tag}: a repeated webhook was stored again")
