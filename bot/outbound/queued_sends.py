"""A person's Resend/Retry and Cancel on a send already in the outbox (mixed into
OutboundService)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace

from bot.contacts import ContactNotFoundError
from bot.highlevel import Contact, HighLevelError, MessageChannel, NotFoundError
from bot.outbound.entry import entry_payload, files_of, is_purged, unpack_entry
from bot.outbound.presenter import SendPresenter
from bot.outbound.submission import NOT_SAVED, ComposeRejected, SlackOrigin, Submitted
from bot.tenancy.accounts import SubAccounts
from bot.ui.thread_builder import PostStatus
from storage import RESEND_KEY_PREFIX, OutboxEntry, OutboxState, OutboxStateError, Store, StoreError

log = logging.getLogger(__name__)

_BEING_SENT = "It is being handed to HighLevel right now; try again in a moment."


class QueuedSends:
    """Mixed into OutboundService, whose store, accounts, presenter and worker it uses."""

    _store: Store
    _accounts: SubAccounts
    _presenter: SendPresenter
    _wake_worker: Callable[[], None]
    _cancelling: set[int]

    async def send_again(self, outbox_id: int, origin: SlackOrigin) -> Submitted:
        """A person pressed Resend/Retry: a new entry, once per original (double clicks too)."""
        try:
            return await self._send_again(outbox_id, origin)
        except StoreError as exc:
            log.warning("could not queue a resend of outbox %d: %s", outbox_id, exc)
            raise ComposeRejected(NOT_SAVED) from None

    async def _send_again(self, outbox_id: int, origin: SlackOrigin) -> Submitted:
        original = await self._store.get_outbox(outbox_id)
        if original is None:
            raise ComposeRejected("That message is no longer in the outbox.")
        if original.state not in (OutboxState.FAILED, OutboxState.UNKNOWN):
            raise ComposeRejected("That message was sent; there is nothing to resend.")
        if is_purged(original):
            raise ComposeRejected(
                "That message is older than the bridge keeps messages "
                "(MESSAGE_RETENTION_DAYS): its text is gone. Write it again."
            )
        request, display = unpack_entry(original)
        if request.scheduled_timestamp is not None and request.scheduled_timestamp <= time.time():
            request = request.model_copy(update={"scheduled_timestamp": None})
        entry, created = await self._store.enqueue(
            idempotency_key=f"{RESEND_KEY_PREFIX}{original.id}",
            team_id=original.team_id,
            channel_id=original.channel_id,
            slack_user_id=origin.user_id,
            location_id=original.location_id,
            contact_id=original.contact_id,
            message_type=original.message_type,
            payload=entry_payload(
                request, replace(display, created_contact=False), files_of(original)
            ),
            thread_id=original.thread_id,
            scheduled_at=request.scheduled_timestamp,
        )
        if created:
            self._wake_worker()
        try:
            contact = await self._accounts.contacts(original.location_id).get(original.contact_id)
        except (ContactNotFoundError, HighLevelError):
            # The resend is queued whatever the look-up says; the contact is only for display.
            contact = Contact(id=original.contact_id)
        return Submitted(entry, created, contact, contact_created=False)

    async def cancel_scheduled(self, outbox_id: int) -> OutboxEntry | None:
        """Cancel a scheduled send at HighLevel (or before it left); ComposeRejected if too late.

        None when another click is cancelling the same send right now: HighLevel is asked once,
        and that click's outcome (the post saying Cancelled, or its notice) is the answer.
        """
        if outbox_id in self._cancelling:
            return None
        self._cancelling.add(outbox_id)
        try:
            return await self._cancel_scheduled(outbox_id)
        except StoreError as exc:
            log.warning("could not cancel outbox %d: %s", outbox_id, exc)
            raise ComposeRejected(
                "The bridge could not record it (its database is busy or unavailable). "
                "Try again in a moment."
            ) from None
        finally:
            self._cancelling.discard(outbox_id)

    async def _cancel_scheduled(self, outbox_id: int) -> OutboxEntry:
        entry = await self._store.get_outbox(outbox_id)
        if entry is None or entry.scheduled_at is None:
            raise ComposeRejected("That message is not a scheduled one.")
        if entry.state is OutboxState.CANCELLED:
            return entry  # an earlier click did it; the post says so already
        if entry.state is OutboxState.SENT:
            highlevel = self._accounts.client(entry.location_id)
            try:
                if entry.message_type == MessageChannel.EMAIL.value and entry.ghl_email_message_id:
                    await highlevel.cancel_scheduled_email(entry.ghl_email_message_id)
                elif entry.ghl_message_id:
                    await highlevel.cancel_scheduled_message(entry.ghl_message_id)
            except NotFoundError:
                raise ComposeRejected(
                    "HighLevel could not cancel it: it was probably sent already."
                ) from None
            except HighLevelError as exc:
                raise ComposeRejected(f"HighLevel could not cancel it: {exc.message}") from None
        elif entry.state is OutboxState.SENDING:
            raise ComposeRejected(_BEING_SENT)
        try:
            entry = await self._store.mark_cancelled(entry.id)
        except OutboxStateError:
            # The outbox worker took it between our read and now.
            raise ComposeRejected(_BEING_SENT) from None
        await self._presenter.show(entry, PostStatus.CANCELLED)
        return entry
