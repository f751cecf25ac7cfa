"""OutboundService: a send from Slack becomes one durable outbox entry."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

from slack_sdk.models.blocks import Block

from bot.compose import (
    CheckedDraft,
    Draft,
    ReplyContext,
    contact_address,
    unreachable_reason,
)
from bot.compose import contact_label as label_of
from bot.contacts import ContactNotFoundError
from bot.highlevel import AccessLostError, Contact, EmailReplyMode, HighLevelError, MessageChannel
from bot.outbound.entry import Display, build_request, entry_payload
from bot.outbound.finishing import (
    ContactNeededError,
    SendFinisher,
    UnknownMergeFieldsError,
)
from bot.outbound.presenter import SendPresenter
from bot.outbound.queued_sends import QueuedSends
from bot.outbound.submission import (
    NOT_SAVED,
    ComposeRejected,
    NotInChannelError,
    NotSavedError,
    SlackOrigin,
    Submitted,
)
from bot.posting.poster import SlackPosters
from bot.recipients import Recipient
from bot.tenancy.accounts import SubAccounts
from bot.tenancy.routing import ChannelRouting
from storage import INTENT_QUEUED, MessageDirection, Store, StoreError

log = logging.getLogger(__name__)


class OutboundService(QueuedSends):
    """Accepts sends from Slack: resolves the contact, checks it, writes the outbox entry."""

    def __init__(
        self,
        *,
        store: Store,
        accounts: SubAccounts,
        routing: ChannelRouting,
        slack: SlackPosters,
        presenter: SendPresenter,
        wake_worker: Callable[[], None],
        finisher: SendFinisher,
        connect_hint: str = "",
    ) -> None:
        self._store = store
        self._accounts = accounts
        self._routing = routing
        self._slack = slack
        self._presenter = presenter
        self._wake_worker = wake_worker
        self._finisher = finisher
        # How to connect a sub-account, for the message of a send that has none to go from.
        self._connect_hint = connect_hint
        # Sends a Cancel click is being carried out for: a second click must not ask again.
        self._cancelling: set[int] = set()

    async def can_post(self, team_id: str, channel_id: str) -> bool:
        """The bot can post in the channel (so a send there will have its thread)."""
        return await (await self._slack.poster(team_id)).can_post(channel_id)

    async def notify(self, origin: SlackOrigin, text: str, blocks: Sequence[Block] = ()) -> None:
        """A notice only the person sees, in the channel they are working in."""
        poster = await self._slack.poster(origin.team_id)
        await poster.ephemeral(origin.channel_id, origin.user_id, text, blocks)

    async def location_for(
        self, checked: CheckedDraft, origin: SlackOrigin, reply: ReplyContext | None
    ) -> str:
        """The connected sub-account a send goes from, or ComposeRejected saying why none.

        A reply goes from its thread's sub-account; otherwise the one chosen in the composer,
        else the channel's (linked, or the only one connected).
        """
        location_id = (reply.location_id if reply is not None else "") or checked.location_id
        if not location_id and reply is not None:
            thread = await self._store.get_thread(reply.thread_id)
            location_id = thread.location_id if thread is not None else ""
        if not location_id:
            route = await self._routing.route(origin.team_id, origin.channel_id)
            if route.location_id is None:
                if not route.choices and self._routing.per_workspace:
                    raise ComposeRejected(
                        "No HighLevel sub-account belongs to this workspace yet, so there is "
                        "nothing to send from. A workspace admin can link one to this channel "
                        f"with `/highlevel link <sub-account>`.{self._connect_hint}",
                        field="sub_account",
                    )
                if not route.choices:
                    raise ComposeRejected(
                        "No HighLevel sub-account is connected yet, so there is nothing to send "
                        f"from.{self._connect_hint}",
                        field="sub_account",
                    )
                raise ComposeRejected(
                    "Several HighLevel sub-accounts are connected and this channel is not "
                    "linked to one, so I can't tell which to send from. Open the composer "
                    "(`/sendsms` alone) to choose one, or ask a workspace admin to link this "
                    "channel with `/highlevel link <sub-account>`.",
                    field="sub_account",
                )
            location_id = route.location_id
        elif location_id == checked.location_id and not await self._routing.may_use(
            origin.team_id, location_id
        ):
            # Chosen in the composer's form: never another workspace's. (A reply's comes
            # from its thread, which is this workspace's.)
            raise ComposeRejected(
                "That HighLevel sub-account can't be used from this workspace, so nothing was "
                "sent.",
                field="sub_account",
            )
        if await self._accounts.get(location_id) is None:
            raise ComposeRejected(
                f"The HighLevel sub-account {self._accounts.label(location_id)} is not "
                f"connected any more, so nothing was sent.{self._connect_hint}",
                field="sub_account",
            )
        return location_id

    async def quick_location(self, origin: SlackOrigin) -> str | None:
        """The sub-account a send from `origin`'s channel goes from when nobody picks one:
        the channel's linked one, or the only one connected; None when it takes a choice."""
        try:
            return (await self._routing.route(origin.team_id, origin.channel_id)).location_id
        except StoreError as exc:
            log.warning("could not read the routing of %s: %s", origin.channel_id, exc)
            return None

    async def find_contact(
        self, checked: CheckedDraft, origin: SlackOrigin, reply: ReplyContext | None
    ) -> tuple[Contact, bool]:
        """The contact a draft is for (created if new), or ComposeRejected saying why not."""
        location_id = await self.location_for(checked, origin, reply)
        return await self._find_contact(checked, reply, location_id)

    async def known_contact(
        self, recipient: Recipient, origin: SlackOrigin, location_id: str = ""
    ) -> Contact | None:
        """The existing contact `recipient` names in the sub-account a send from `origin`
        would use (none is created); None when there is none, or no sub-account to ask."""
        if not location_id:
            location_id = (
                await self._routing.route(origin.team_id, origin.channel_id)
            ).location_id or ""
        elif not await self._routing.may_use(origin.team_id, location_id):
            return None
        if not location_id or await self._accounts.get(location_id) is None:
            return None
        try:
            resolved = await self._accounts.contacts(location_id).resolve(recipient, create=False)
        except (ContactNotFoundError, HighLevelError):
            return None
        return resolved.contact

    async def _find_contact(
        self, checked: CheckedDraft, reply: ReplyContext | None, location_id: str
    ) -> tuple[Contact, bool]:
        contacts = self._accounts.contacts(location_id)
        try:
            if reply is not None:
                return await contacts.get(reply.contact_id), False
            assert checked.recipient is not None  # noqa: S101 - check_draft guarantees it
            resolved = await contacts.resolve(
                checked.recipient, first_name=checked.first_name, last_name=checked.last_name
            )
        except ContactNotFoundError as exc:
            raise ComposeRejected(str(exc), field="recipient") from None
        except AccessLostError:
            raise ComposeRejected(
                f"HighLevel no longer lets the bridge into {self._accounts.label(location_id)}, "
                f"so nothing was sent.{self._connect_hint}"
            ) from None
        except HighLevelError as exc:
            raise ComposeRejected(
                f"HighLevel did not answer the contact lookup: {exc.message}"
            ) from None
        return resolved.contact, resolved.created

    async def submit(
        self,
        checked: CheckedDraft,
        origin: SlackOrigin,
        *,
        idempotency_key: str,
        reply: ReplyContext | None = None,
        contact: Contact | None = None,
        contact_created: bool = False,
    ) -> Submitted:
        """Write the send to the outbox (once per idempotency key) and wake the worker."""
        try:
            return await self._submit(
                checked,
                origin,
                idempotency_key=idempotency_key,
                reply=reply,
                contact=contact,
                contact_created=contact_created,
            )
        except StoreError as exc:
            # Every write of a submit is the one enqueue (with its intent's end), rolled back
            # whole when it fails.
            log.warning("could not queue a send from %s: %s", origin.user_id, exc)
            raise NotSavedError(NOT_SAVED) from None

    async def _submit(
        self,
        checked: CheckedDraft,
        origin: SlackOrigin,
        *,
        idempotency_key: str,
        reply: ReplyContext | None,
        contact: Contact | None,
        contact_created: bool,
    ) -> Submitted:
        existing = await self._store.get_outbox_by_key(idempotency_key)
        if existing is not None:
            # A replay, or an intent finished again after a restart: its entry is there.
            await self._store.close_intent(idempotency_key, INTENT_QUEUED)
            known = contact or await self._accounts.contacts(existing.location_id).get(
                existing.contact_id
            )
            return Submitted(existing, created=False, contact=known, contact_created=False)
        if not await self.can_post(origin.team_id, origin.channel_id):
            raise NotInChannelError("The bot is not in this channel.")
        location_id = await self.location_for(checked, origin, reply)
        if contact is None:
            contact, contact_created = await self._find_contact(checked, reply, location_id)
        reason = unreachable_reason(contact, checked.channel)
        if reason is not None:
            raise ComposeRejected(reason, field="channel")
        try:
            checked = await self._finisher.finish(
                checked, contact, origin.team_id, origin.user_id, location_id
            )
        except (UnknownMergeFieldsError, ContactNeededError) as exc:
            raise ComposeRejected(str(exc), field="message") from None
        thread_id = reply.thread_id if reply is not None else None
        if thread_id is None:
            thread = await self._store.find_thread_for_contact(
                origin.team_id, origin.channel_id, location_id, contact.id
            )
            thread_id = thread.id if thread is not None else None
        default_from = None
        if checked.channel is MessageChannel.EMAIL and not checked.email_from:
            account = await self._accounts.get(location_id)
            default_from = account.email_from if account is not None else None
        request = build_request(checked, contact, reply, default_from=default_from)
        display = Display(
            contact_label=label_of(contact),
            contact_address=contact_address(contact, checked.channel),
            created_contact=contact_created,
        )
        entry, created = await self._store.enqueue(
            idempotency_key=idempotency_key,
            team_id=origin.team_id,
            channel_id=origin.channel_id,
            slack_user_id=origin.user_id,
            location_id=location_id,
            contact_id=contact.id,
            message_type=checked.channel.value,
            payload=entry_payload(
                request, display, checked.files, quiet_hours_override=checked.send_anyway
            ),
            thread_id=thread_id,
            scheduled_at=checked.schedule_at,
            close_intent=idempotency_key,
        )
        if created:
            log.info("outbox %d: %s queued by %s", entry.id, entry.message_type, origin.user_id)
            if checked.send_anyway:
                log.info("outbox %d: sent inside quiet hours by %s", entry.id, origin.user_id)
            self._wake_worker()
        return Submitted(entry, created, contact, contact_created)

    async def thread_for_slack_message(
        self, team_id: str, channel_id: str, ts: str, thread_ts: str | None
    ) -> int | None:
        """The mapped thread a Slack message belongs to (its root or any reply), if any."""
        thread = await self._store.get_thread_by_slack(team_id, channel_id, thread_ts or ts)
        return thread.id if thread is not None else None

    async def reply_context(
        self, thread_id: int, *, channel_id: str | None = None, message_ts: str | None = None
    ) -> tuple[ReplyContext, Draft]:
        """What a reply into a mapped thread needs, and how the composer starts.

        The channel defaults to the one the customer last used. For email, the reply joins the
        customer's mailbox thread: `threadId` is the thread's id and `replyMessageId` the email
        answered (the one the shortcut was used on, else the latest from the customer); it is
        `reply_all`, with the CC prefilled, when that email had other recipients.
        """
        thread = await self._store.get_thread(thread_id)
        if thread is None:
            raise ComposeRejected("This thread is no longer linked to a HighLevel conversation.")
        try:
            channel = MessageChannel(thread.channel_type or MessageChannel.SMS.value)
        except ValueError:
            channel = MessageChannel.SMS
        label = thread.contact_label or thread.contact_id
        answered = None
        if channel_id is not None and message_ts is not None:
            answered = await self._store.get_message_by_slack(channel_id, message_ts)
            if answered is not None and answered.message_type != MessageChannel.EMAIL.value:
                answered = None
        if answered is None:
            answered = await self._store.latest_message(
                thread.id,
                direction=MessageDirection.INBOUND,
                message_type=MessageChannel.EMAIL.value,
            )
        email_thread_id = (answered.email_thread_id if answered else None) or thread.email_thread_id
        if email_thread_id is None:
            reply = ReplyContext(
                thread_id=thread.id,
                contact_id=thread.contact_id,
                contact_label=label,
                location_id=thread.location_id,
            )
            return reply, Draft(channel=channel)
        reply_message_id = (
            (answered.ghl_email_message_id or answered.ghl_message_id) if answered else None
        )
        subject = thread.subject or ""
        cc: list[str] = []
        if reply_message_id is not None:
            try:
                client = self._accounts.client(thread.location_id)
                email = await asyncio.wait_for(client.get_email(reply_message_id), 1.0)
            except (HighLevelError, TimeoutError):
                email = None
            if email is not None:
                subject = email.subject or subject
                cc = list(email.cc)
        if subject and not subject.lower().startswith("re:"):
            subject = f"Re: {subject}"
        reply = ReplyContext(
            thread_id=thread.id,
            contact_id=thread.contact_id,
            contact_label=label,
            email_thread_id=email_thread_id,
            reply_message_id=reply_message_id,
            email_reply_mode=EmailReplyMode.REPLY_ALL if cc else EmailReplyMode.REPLY,
            location_id=thread.location_id,
            reply_all_cc=", ".join(cc),
        )
        return reply, Draft(channel=channel, subject=subject, cc=", ".join(cc))
