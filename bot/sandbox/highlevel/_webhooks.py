"""Webhook delivery the way HighLevel does it: signed, in the background, retried only on 429."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import random
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

import aiohttp
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ._models import iso, now

__all__ = ["WebhookDelivery", "WebhookSender"]

logger = logging.getLogger("bot.sandbox.highlevel")

Outcome = Literal["pending", "delivered", "dropped", "no_url"]


@dataclass
class WebhookDelivery:
    """One event and what happened to it. ``attempts`` holds HTTP statuses or error names."""

    event_type: str
    webhook_id: str
    payload: dict[str, Any]
    body: bytes
    signature: str
    url: str | None
    attempts: list[int | str] = field(default_factory=list)
    outcome: Outcome = "pending"
    # Set once the first attempt has an answer (or the event has nowhere to go).
    tried: asyncio.Event = field(default_factory=asyncio.Event, repr=False, compare=False)


class WebhookSender:
    """Signs each body with Ed25519 (``x-ghl-signature``, base64 over the raw bytes).

    First attempts go out one at a time in event order. A 429 schedules a retry after
    ``retry_delay`` (HighLevel: about 10 minutes, with jitter) without holding up later events;
    anything else that is not 2xx — an error status, a refused connection, a timeout — drops
    the event for good, as HighLevel does.
    """

    def __init__(
        self,
        signing_key: Ed25519PrivateKey,
        *,
        timeout: float,
        max_attempts: int,
        retry_delay: float,
        rng: random.Random,
    ) -> None:
        self.signing_key = signing_key
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.retry_delay = retry_delay
        self.url: str | None = None
        self.deliveries: list[WebhookDelivery] = []
        self._rng = rng
        self._queue: asyncio.Queue[WebhookDelivery] | None = None
        self._worker: asyncio.Task[None] | None = None
        self._retries: set[asyncio.Task[None]] = set()
        self._session: aiohttp.ClientSession | None = None

    @property
    def public_key_pem(self) -> str:
        return (
            self.signing_key.public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode("ascii")
        )

    async def start(self) -> None:
        if self._worker is not None:
            return
        self._queue = asyncio.Queue()
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
        self._worker = asyncio.create_task(self._run(self._queue), name="ghl-sandbox-webhooks")

    async def stop(self) -> None:
        tasks = [*self._retries, *([self._worker] if self._worker else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._retries.clear()
        self._worker = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    def emit(self, payload: dict[str, Any]) -> WebhookDelivery:
        """Queue an event. ``webhookId`` and ``timestamp`` are added like HighLevel does."""
        full = {**payload, "webhookId": str(uuid.uuid4()), "timestamp": iso(now())}
        body = json.dumps(full, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        signature = base64.b64encode(self.signing_key.sign(body)).decode("ascii")
        delivery = WebhookDelivery(
            event_type=str(full.get("type", "")),
            webhook_id=full["webhookId"],
            payload=full,
            body=body,
            signature=signature,
            url=self.url,
        )
        self.deliveries.append(delivery)
        if delivery.url is None:
            delivery.outcome = "no_url"
            delivery.tried.set()
        elif self._queue is None:
            raise RuntimeError("the simulator is not running: start it before emitting webhooks")
        else:
            self._queue.put_nowait(delivery)
        return delivery

    async def drain(self) -> None:
        """Wait until every queued event and pending 429 retry has a final outcome."""
        while True:
            if self._queue is not None:
                await self._queue.join()
            if not self._retries:
                return
            await asyncio.gather(*list(self._retries), return_exceptions=True)

    async def _run(self, queue: asyncio.Queue[WebhookDelivery]) -> None:
        while True:
            delivery = await queue.get()
            try:
                await self._attempt(delivery)
            finally:
                queue.task_done()

    async def _attempt(self, delivery: WebhookDelivery) -> None:
        try:
            await self._attempt_once(delivery)
        finally:
            delivery.tried.set()

    async def _attempt_once(self, delivery: WebhookDelivery) -> None:
        if self._session is None or delivery.url is None:  # stopped meanwhile
            delivery.outcome = "dropped"
            return
        headers = {"Content-Type": "application/json", "x-ghl-signature": delivery.signature}
        try:
            async with self._session.post(
                delivery.url, data=delivery.body, headers=headers
            ) as response:
                await response.read()
                status: int | str = response.status
        except Exception as exc:  # refused, reset, timed out, bad URL: all lose the event
            status = type(exc).__name__
        delivery.attempts.append(status)
        if isinstance(status, int) and 200 <= status < 300:
            delivery.outcome = "delivered"
        elif status == 429 and len(delivery.attempts) < self.max_attempts:
            task = asyncio.create_task(self._retry(delivery))
            self._retries.add(task)
            task.add_done_callback(self._retries.discard)
        else:
            delivery.outcome = "dropped"
            logger.info(
                "sandbox webhook %s dropped after %d attempt(s): %s",
                delivery.event_type,
                len(delivery.attempts),
                status,
            )

    async def _retry(self, delivery: WebhookDelivery) -> None:
        jitter = 1 + 0.1 * self._rng.random()
        await asyncio.sleep(self.retry_delay * jitter)
        await self._attempt(delivery)
