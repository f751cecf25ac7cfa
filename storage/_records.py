"""Row types returned by the store: immutable snapshots of one row each.

Timestamps are UTC epoch seconds (float). HighLevel and Slack ids are kept as the strings
those services hand out.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from typing import Any, Final, Literal


class _Unset(enum.Enum):
    UNSET = enum.auto()


UNSET: Final = _Unset.UNSET
"""Default of optional update arguments: "leave this column as it is" (None means NULL)."""

Unset = _Unset
"""Type of `UNSET`, for annotations such as `str | None | Unset`."""


RESEND_KEY_PREFIX: Final = "again:"
"""The idempotency key of a send a person asked for again (Resend, Retry) is this prefix and
the original send's outbox id: one resend per original, whatever the clicks."""


class OutboxState(enum.StrEnum):
    """Lifecycle of one send.

    pending -> sending (claimed by the worker) -> sent | failed | unknown | pending (retry later).
    'unknown' means the request may have reached HighLevel: it must be reconciled, never
    resent blindly, because a customer text sent twice is a serious bug.
    """

    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    UNKNOWN = "unknown"
    CANCELLED = "cancelled"


class MessageDirection(enum.StrEnum):
    """Seen from the business: inbound comes from the customer, outbound goes to them."""

    INBOUND = "inbound"
    OUTBOUND = "outbound"


@dataclass(frozen=True, slots=True)
class ThreadRecord:
    """One Slack thread mapped to one HighLevel contact (and its conversation)."""

    id: int
    team_id: str
    channel_id: str
    thread_ts: str | None
    """None while the thread is reserved but its Slack root post does not exist yet."""
    location_id: str
    contact_id: str
    conversation_id: str | None
    channel_type: str | None
    """HighLevel message type last used in this thread (SMS, Email, WhatsApp, ...)."""
    email_thread_id: str | None
    subject: str | None
    contact_label: str | None
    created_at: float
    updated_at: float


@dataclass(frozen=True, slots=True)
class MessageRecord:
    """One message mirrored between Slack and HighLevel."""

    id: int
    thread_id: int | None
    slack_channel_id: str | None
    slack_ts: str | None
    ghl_message_id: str | None
    ghl_email_message_id: str | None
    email_thread_id: str | None
    direction: MessageDirection
    message_type: str | None
    status: str | None
    slack_user_id: str | None
    outbox_id: int | None
    created_at: float
    updated_at: float


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """One send request from Slack, durable before any HighLevel request is made."""

    id: int
    idempotency_key: str
    team_id: str
    channel_id: str
    slack_user_id: str
    thread_id: int | None
    location_id: str
    contact_id: str
    conversation_id: str | None
    message_type: str
    payload_json: str
    state: OutboxState
    attempts: int
    last_error: str | None
    next_attempt_at: float
    ghl_message_id: str | None
    ghl_email_message_id: str | None
    ghl_message_ids: tuple[str, ...]
    slack_ts: str | None
    scheduled_at: float | None
    created_at: float
    updated_at: float
    ghl_msg: str | None = None
    """HighLevel's `msg` in its answer to the send, when it gave one."""

    @property
    def payload(self) -> dict[str, Any]:
        """The send request as given to `enqueue` (decoded anew on each access)."""
        decoded: dict[str, Any] = json.loads(self.payload_json)
        return decoded


class InboundState(enum.StrEnum):
    """pending -> processing -> done | failed (or back to pending to retry later)."""

    PENDING = "pending"
    PROCESSING = "processing"
    DONE = "done"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class InboundEvent:
    """A HighLevel event (webhook or polled message), kept until it has been shown in Slack."""

    id: int
    source: str
    event_type: str
    conversation_key: str
    payload_json: str
    state: InboundState
    attempts: int
    last_error: str | None
    next_attempt_at: float
    received_at: float

    @property
    def payload(self) -> dict[str, Any]:
        decoded: dict[str, Any] = json.loads(self.payload_json)
        return decoded


class IntentState(enum.StrEnum):
    """open (saved before the ack; not yet queued or refused) -> done."""

    OPEN = "open"
    DONE = "done"


INTENT_QUEUED: Final = "queued"
"""The outcome of an intent closed because its outbox entry exists."""


@dataclass(frozen=True, slots=True)
class ComposeIntent:
    """A send a person asked for, saved before Slack was answered, until it is queued or refused."""

    id: int
    idempotency_key: str
    """The key its outbox entry gets: the intent is closed in the same transaction."""
    kind: str
    team_id: str
    channel_id: str
    slack_user_id: str
    payload_json: str
    response_url: str | None
    state: IntentState
    outcome: str | None
    created_at: float
    closed_at: float | None

    @property
    def payload(self) -> dict[str, Any]:
        decoded: dict[str, Any] = json.loads(self.payload_json)
        return decoded


@dataclass(frozen=True, slots=True)
class InboundBacklog:
    """The inbound queue at one moment: what waits, what is in hand, since when the oldest waits."""

    pending: int
    processing: int
    oldest_pending_received_at: float | None
    """When the longest-waiting pending event was stored; None while none is pending."""


LocationAuth = Literal["pit", "location", "company"]
"""How a location's access is held: the private integration token of the settings, an OAuth
Location token, or a Location token minted from its agency's Company token."""

ConnectionStatus = Literal["connected", "disconnected"]

TokenScope = Literal["location", "company"]
"""Whose token a refresh lease is for: a location's or an agency company's."""


@dataclass(frozen=True, slots=True)
class LocationRecord:
    """One HighLevel sub-account (location) the bridge works for, with its (encrypted) tokens.

    Tokens are opaque ciphertext: the store never sees them in plain text.
    """

    location_id: str
    name: str | None
    company_id: str | None
    auth: LocationAuth
    status: ConnectionStatus
    access_token: str | None
    """Ciphertext; None for "pit" (the token is in the settings) and once disconnected."""
    refresh_token: str | None
    """Ciphertext; None for "pit" and "company" (a minted token is minted again, not refreshed)."""
    expires_at: float | None
    obtained_at: float | None
    """When the current access token was obtained."""
    token_version: int
    """+1 at every new access token: what a refresh saw, so that only one refreshes it."""
    inbox_team_id: str | None
    inbox_channel_id: str | None
    disconnected_reason: str | None
    disconnect_notified: bool
    """Whether the Slack channels were told of the current disconnection (see
    claim_disconnect_notice)."""
    last_webhook_at: float | None
    last_poll_at: float | None
    connected_at: float
    updated_at: float
    slack_team_id: str | None = None
    """The Slack workspace (team id) the sub-account belongs to; None: none yet (see
    claim_location)."""
    email_from: str | None = None
    """The default From address of its emails (`/highlevel from`); None: HighLevel's default."""


@dataclass(frozen=True, slots=True)
class CompanyRecord:
    """One HighLevel agency (company) whose Company token connects its locations."""

    company_id: str
    name: str | None
    status: ConnectionStatus
    access_token: str | None
    """Ciphertext; None once disconnected."""
    refresh_token: str | None
    """Ciphertext; None once disconnected."""
    expires_at: float | None
    obtained_at: float | None
    token_version: int
    updated_at: float


@dataclass(frozen=True, slots=True)
class ChannelLink:
    """A Slack channel that belongs to one location: its sends go there, its threads open there."""

    team_id: str
    channel_id: str
    location_id: str
    linked_by: str
    """The Slack user id of who linked it."""
    linked_at: float


@dataclass(frozen=True, slots=True)
class ReleasedWorkspace:
    """What `release_slack_workspace` undid: rows changed in each kind."""

    locations: int
    """Sub-accounts it owned, now owned by no workspace."""
    links: int
    """Its channel links, deleted."""
    inboxes: int
    """Sub-accounts whose inbox was one of its channels, now without an inbox of their own."""


@dataclass(frozen=True, slots=True)
class SlackWorkspaceRow:
    """One workspace (or Enterprise Grid org, for an org-wide install) the app is installed
    in, as `list_slack_workspaces` gives it: no tokens."""

    enterprise_id: str | None
    team_id: str | None
    """None for an org-wide install."""
    team_name: str | None
    is_enterprise_install: bool
    installed_at: float
    """When its latest install happened."""
    bot_token_expires_at: float | None
    """None when its bot token does not expire (no token rotation), or it has none."""
    has_bot: bool


@dataclass(frozen=True, slots=True)
class SlackInstallation:
    """One install of the Slack app, as the store keeps it (slack_sdk's Installation, flat).

    Tokens and the incoming webhook URL are ciphertext: the store never sees them in plain
    text. `team_id` is None for an Enterprise Grid org-wide install, `enterprise_id` outside
    Enterprise Grid. `user_id` is None for a bot saved on its own (save_slack_bot).
    """

    enterprise_id: str | None
    team_id: str | None
    installed_at: float
    is_enterprise_install: bool = False
    enterprise_name: str | None = None
    enterprise_url: str | None = None
    team_name: str | None = None
    app_id: str | None = None
    token_type: str | None = None
    bot_id: str | None = None
    bot_user_id: str | None = None
    bot_scopes: tuple[str, ...] = ()
    bot_token: str | None = None
    bot_refresh_token: str | None = None
    bot_token_expires_at: float | None = None
    bot_installed_at: float | None = None
    """When the bot token's install happened (a user-only install later keeps the bot)."""
    user_id: str | None = None
    user_scopes: tuple[str, ...] = ()
    user_token: str | None = None
    user_refresh_token: str | None = None
    user_token_expires_at: float | None = None
    incoming_webhook_url: str | None = None
    incoming_webhook_channel: str | None = None
    incoming_webhook_channel_id: str | None = None
    incoming_webhook_configuration_url: str | None = None
    custom_values_json: str = "{}"


@dataclass(frozen=True, slots=True)
class SlackInstallationRecord:
    """A stored install: the workspace's (or org's) latest bot with its installer, or one
    user's install with that latest bot; and the bot token's refresh state."""

    installation: SlackInstallation
    token_version: int
    """+1 at every new bot token: what a refresh saw, so that only one instance refreshes it."""
    refresh_owner: str | None
    refresh_lease_until: float | None
    updated_at: float


@dataclass(frozen=True, slots=True)
class StatusChange:
    """One step of a send's history: its state in the outbox ('queued' for pending; a claim
    is not a step) or a status HighLevel reported for one of its messages."""

    status: str
    at: float
    detail: str | None
    """last_error for 'failed' and 'unknown' (may quote HighLevel's reason), else None."""


@dataclass(frozen=True, slots=True)
class AuditRow:
    """One send as the audit shows it: who sent what kind of message to whom, from where,
    how it went. Holds no message body, subject, phone number or email address."""

    outbox_id: int
    created_at: float
    team_id: str
    channel_id: str
    slack_user_id: str
    location_id: str
    contact_id: str
    message_type: str
    state: OutboxState
    ghl_message_ids: tuple[str, ...]
    """Every id HighLevel returned for it, each once: the main one, the email's, the others."""
    scheduled_at: float | None
    quiet_hours_override: bool
    """A person chose "Send now anyway" inside the contact's quiet hours."""
    resend_of: int | None
    """The outbox id of the send this one sends again (Resend, Retry), else None."""
    history: tuple[StatusChange, ...]
    """In the order it happened."""
