"""The store interface both backends implement (SqliteStore, PostgresStore)."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from types import TracebackType
from typing import Any, Protocol, Self

from storage._budgets import BudgetGrant
from storage._history import HistoryStore
from storage._home import HomeStore
from storage._inbox import InboxStore
from storage._leases import HandOver, Takeover
from storage._records import (
    UNSET,
    AuditRow,
    ChannelLink,
    CompanyRecord,
    ComposeIntent,
    ConnectionStatus,
    InboundBacklog,
    InboundEvent,
    InboundState,
    LocationAuth,
    LocationRecord,
    MessageDirection,
    MessageRecord,
    OutboxEntry,
    OutboxState,
    ReleasedWorkspace,
    SlackInstallation,
    SlackInstallationRecord,
    SlackWorkspaceRow,
    ThreadRecord,
    TokenScope,
    Unset,
)


class Store(HistoryStore, InboxStore, HomeStore, Protocol):
    """Persistence of the bridge: thread map, messages, outbox, dedupe marks, key/value.

    Errors are StoreError and its subclasses (NotFoundError, ConflictError,
    OutboxStateError), never a backend's own exceptions. Timestamps are UTC epoch seconds.
    See SqliteStore for the full contract of each method.
    """

    async def open(self) -> None: ...
    async def close(self) -> None: ...
    async def __aenter__(self) -> Self: ...
    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...
    @property
    def shared(self) -> bool:
        """Whether other instances may use this database at the same time (PostgreSQL)."""
        ...

    @property
    def instance_id(self) -> str: ...
    @property
    def lease_seconds(self) -> float: ...
    async def schema_version(self) -> int: ...
    async def ping(self) -> None: ...
    async def check_writable(self) -> None: ...

    # threads
    async def upsert_thread(
        self,
        *,
        team_id: str,
        channel_id: str,
        location_id: str,
        contact_id: str,
        thread_ts: str | None = None,
        conversation_id: str | None = None,
        channel_type: str | None = None,
        email_thread_id: str | None = None,
        subject: str | None = None,
        contact_label: str | None = None,
    ) -> ThreadRecord: ...
    async def get_thread(self, thread_id: int) -> ThreadRecord | None: ...
    async def get_thread_by_slack(
        self, team_id: str, channel_id: str, thread_ts: str
    ) -> ThreadRecord | None: ...
    async def find_thread_for_contact(
        self, team_id: str, channel_id: str, location_id: str, contact_id: str
    ) -> ThreadRecord | None: ...
    async def find_threads_for_conversation(
        self, location_id: str, conversation_id: str
    ) -> list[ThreadRecord]: ...
    async def find_threads_for_contact(
        self, location_id: str, contact_id: str
    ) -> list[ThreadRecord]: ...
    async def update_thread(
        self,
        thread_id: int,
        *,
        conversation_id: str | Unset | None = UNSET,
        channel_type: str | Unset | None = UNSET,
        email_thread_id: str | Unset | None = UNSET,
        subject: str | Unset | None = UNSET,
        contact_label: str | Unset | None = UNSET,
    ) -> ThreadRecord: ...
    async def set_thread_ts(
        self, thread_id: int, thread_ts: str, *, replace: bool = False
    ) -> ThreadRecord: ...
    async def delete_thread(self, thread_id: int) -> bool: ...

    # messages
    async def record_message(
        self,
        *,
        direction: MessageDirection,
        thread_id: int | None = None,
        ghl_message_id: str | None = None,
        ghl_email_message_id: str | None = None,
        email_thread_id: str | None = None,
        message_type: str | None = None,
        status: str | None = None,
        slack_channel_id: str | None = None,
        slack_ts: str | None = None,
        slack_user_id: str | None = None,
        outbox_id: int | None = None,
    ) -> tuple[MessageRecord, bool]: ...
    async def get_message(self, message_id: int) -> MessageRecord | None: ...
    async def get_message_by_ghl_id(self, ghl_message_id: str) -> MessageRecord | None: ...
    async def get_message_by_slack(self, channel_id: str, ts: str) -> MessageRecord | None: ...
    async def update_message_status(
        self, ghl_message_id: str, status: str
    ) -> MessageRecord | None: ...
    async def update_status_of_send(
        self, ghl_message_id: str, status: str
    ) -> OutboxEntry | None: ...
    async def latest_message(
        self,
        thread_id: int,
        *,
        direction: MessageDirection | None = None,
        message_type: str | None = None,
    ) -> MessageRecord | None: ...
    async def attach_slack_ts(
        self, message_id: int, *, slack_channel_id: str, slack_ts: str, replace: bool = False
    ) -> MessageRecord: ...

    # outbox
    async def enqueue(
        self,
        *,
        idempotency_key: str,
        team_id: str,
        channel_id: str,
        slack_user_id: str,
        location_id: str,
        contact_id: str,
        message_type: str,
        payload: Mapping[str, Any],
        thread_id: int | None = None,
        conversation_id: str | None = None,
        slack_ts: str | None = None,
        scheduled_at: float | None = None,
        next_attempt_at: float | None = None,
        close_intent: str | None = None,
    ) -> tuple[OutboxEntry, bool]: ...
    async def claim_next(self, now: float | None = None) -> OutboxEntry | None: ...
    async def claim_next_or_due(
        self, now: float | None = None
    ) -> tuple[OutboxEntry | None, float | None]: ...
    async def mark_sent(
        self,
        outbox_id: int,
        *,
        conversation_id: str | None,
        ghl_message_id: str | None,
        ghl_email_message_id: str | None = None,
        ghl_message_ids: Sequence[str] = (),
        ghl_msg: str | None = None,
    ) -> OutboxEntry: ...
    async def mark_failed(self, outbox_id: int, error: str) -> OutboxEntry: ...
    async def mark_unknown(self, outbox_id: int, error: str) -> OutboxEntry: ...
    async def retry_later(
        self, outbox_id: int, *, next_attempt_at: float, error: str | None
    ) -> OutboxEntry: ...
    async def mark_cancelled(self, outbox_id: int) -> OutboxEntry: ...
    async def set_outbox_slack_ts(self, outbox_id: int, slack_ts: str) -> OutboxEntry: ...
    async def set_outbox_thread(self, outbox_id: int, thread_id: int) -> OutboxEntry: ...
    async def record_outbox_upload(self, outbox_id: int, slack_file_id: str, url: str) -> str: ...
    async def outbox_uploads(self, outbox_id: int) -> dict[str, str]: ...
    async def set_outbox_conversation(self, outbox_id: int, conversation_id: str) -> None: ...
    async def audit_rows(
        self, since: float, until: float | None = None, location_id: str | None = None
    ) -> list[AuditRow]: ...
    async def purge_before(self, cutoff: float, *, batch: int = 500) -> int: ...
    async def has_unsettled_send(self, location_id: str, contact_id: str) -> bool: ...
    async def enqueue_inbound(
        self,
        *,
        source: str,
        event_type: str,
        conversation_key: str,
        payload: Mapping[str, Any] | str,
        dedupe_keys: Sequence[str],
        ttl_seconds: float,
        sort_at: float | None = None,
        not_before: float | None = None,
    ) -> InboundEvent | None: ...
    async def claim_inbound(self, now: float | None = None) -> InboundEvent | None: ...
    async def claim_inbound_or_due(
        self, now: float | None = None
    ) -> tuple[InboundEvent | None, float | None]: ...
    async def finish_inbound(self, event_id: int) -> None: ...
    async def fail_inbound(self, event_id: int, error: str) -> None: ...
    async def retry_inbound(self, event_id: int, *, next_attempt_at: float, error: str) -> None: ...
    async def recover_inbound(self) -> int: ...
    async def next_inbound_due_at(self) -> float | None: ...
    async def count_inbound(self, state: InboundState | None = None) -> int: ...
    async def last_inbound_at(self, source: str) -> float | None: ...
    async def inbound_backlog(self) -> InboundBacklog: ...
    async def get_outbox(self, outbox_id: int) -> OutboxEntry | None: ...
    async def get_outbox_by_key(self, idempotency_key: str) -> OutboxEntry | None: ...
    async def list_outbox(
        self, state: OutboxState | None = None, *, limit: int = 100
    ) -> list[OutboxEntry]: ...
    async def next_outbox_due_at(self) -> float | None: ...
    async def count_outbox_by_state(self) -> dict[OutboxState, int]: ...
    async def recover_after_crash(self) -> int: ...
    async def fail_unsent_for_location(
        self, location_id: str, reason: str
    ) -> list[OutboxEntry]: ...

    # claim leases
    async def renew_leases(self) -> int: ...
    async def take_over_expired(self, *, every_claim: bool = False) -> Takeover: ...
    async def release_claim(self, outbox_id: int) -> None: ...
    async def hand_over(self, *, may_have_sent: Collection[int] = ()) -> HandOver: ...
    async def last_hand_over(self) -> str | None: ...

    # shared rate budgets
    async def take_budget(
        self,
        key: str,
        *,
        rate: float,
        burst: int,
        max_wait: float | None = None,
        now: float | None = None,
    ) -> BudgetGrant: ...
    async def take_window(
        self,
        key: str,
        *,
        limit: int,
        period: float,
        max_wait: float | None = None,
        now: float | None = None,
    ) -> BudgetGrant: ...
    async def hold_budget(
        self, key: str, *, seconds: float, rate: float, burst: int, now: float | None = None
    ) -> None: ...

    # tenancy: locations, companies, token refresh leases, channel links
    async def save_location(
        self,
        location_id: str,
        *,
        auth: LocationAuth,
        name: str | None = None,
        company_id: str | None = None,
        access_token: str | None = None,
        refresh_token: str | None = None,
        expires_at: float | None = None,
    ) -> LocationRecord: ...
    async def get_location(self, location_id: str) -> LocationRecord | None: ...
    async def list_locations(
        self, *, status: ConnectionStatus | None = None
    ) -> list[LocationRecord]: ...
    async def set_location_name(self, location_id: str, name: str) -> None: ...
    async def disconnect_location(self, location_id: str, reason: str) -> bool: ...
    async def claim_disconnect_notice(self, location_id: str) -> bool: ...
    async def set_location_inbox(self, location_id: str, team_id: str, channel_id: str) -> None: ...
    async def set_location_email_from(self, location_id: str, email_from: str | None) -> None: ...
    async def note_location_seen(
        self,
        location_id: str,
        *,
        webhook_at: float | None = None,
        poll_at: float | None = None,
    ) -> None: ...
    async def save_company(
        self,
        company_id: str,
        *,
        name: str | None = None,
        access_token: str,
        refresh_token: str | None,
        expires_at: float,
    ) -> CompanyRecord: ...
    async def get_company(self, company_id: str) -> CompanyRecord | None: ...
    async def disconnect_company(self, company_id: str, reason: str) -> bool: ...
    async def begin_token_refresh(
        self, scope: TokenScope, key: str, *, seen_version: int, lease_seconds: float
    ) -> bool: ...
    async def finish_token_refresh(
        self,
        scope: TokenScope,
        key: str,
        *,
        access_token: str,
        refresh_token: str | None,
        expires_at: float,
    ) -> int: ...
    async def abandon_token_refresh(self, scope: TokenScope, key: str) -> None: ...
    async def link_channel(
        self, team_id: str, channel_id: str, location_id: str, *, linked_by: str
    ) -> ChannelLink: ...
    async def get_channel_link(self, team_id: str, channel_id: str) -> ChannelLink | None: ...
    async def list_channel_links(self, *, location_id: str | None = None) -> list[ChannelLink]: ...
    async def claim_location(self, location_id: str, team_id: str) -> str | None: ...
    async def release_slack_workspace(self, team_id: str) -> ReleasedWorkspace: ...

    # Slack installations (ciphertext tokens), bot token refresh leases, OAuth states
    async def save_slack_installation(self, installation: SlackInstallation) -> None: ...
    async def save_slack_bot(self, installation: SlackInstallation) -> None: ...
    async def list_slack_workspaces(self) -> list[SlackWorkspaceRow]: ...
    async def find_slack_installation(
        self,
        enterprise_id: str | None,
        team_id: str | None,
        *,
        user_id: str | None = None,
        is_enterprise_install: bool = False,
    ) -> SlackInstallationRecord | None: ...
    async def find_slack_bot(
        self, enterprise_id: str | None, team_id: str | None, *, is_enterprise_install: bool = False
    ) -> SlackInstallationRecord | None: ...
    async def delete_slack_bot(self, enterprise_id: str | None, team_id: str | None) -> None: ...
    async def delete_slack_installation(
        self, enterprise_id: str | None, team_id: str | None, *, user_id: str | None = None
    ) -> None: ...
    async def delete_slack_workspace(
        self, enterprise_id: str | None, team_id: str | None
    ) -> int: ...
    async def begin_slack_token_refresh(
        self,
        enterprise_id: str | None,
        team_id: str | None,
        *,
        seen_version: int,
        lease_seconds: float,
    ) -> bool: ...
    async def finish_slack_token_refresh(
        self,
        enterprise_id: str | None,
        team_id: str | None,
        *,
        bot_token: str,
        bot_refresh_token: str | None,
        bot_token_expires_at: float | None,
    ) -> int: ...
    async def abandon_slack_token_refresh(
        self, enterprise_id: str | None, team_id: str | None
    ) -> None: ...
    async def issue_oauth_state(self, state: str, expires_at: float) -> None: ...
    async def consume_oauth_state(self, state: str) -> bool: ...
    async def purge_expired_oauth_states(self, now: float | None = None) -> int: ...

    # compose intents
    async def open_intent(
        self,
        *,
        idempotency_key: str,
        kind: str,
        team_id: str,
        channel_id: str,
        slack_user_id: str,
        payload: Mapping[str, Any],
        response_url: str | None = None,
    ) -> bool: ...
    async def close_intent(self, idempotency_key: str, outcome: str) -> bool: ...
    async def get_intent(self, idempotency_key: str) -> ComposeIntent | None: ...
    async def list_open_intents(
        self, *, created_before: float, limit: int = 100
    ) -> list[ComposeIntent]: ...

    # dedupe
    async def mark_processed(self, source: str, key: str, *, ttl_seconds: float) -> bool: ...
    async def forget_processed(self, source: str, key: str) -> None: ...
    async def purge_expired(self, now: float | None = None) -> int: ...

    # key/value
    async def kv_get(self, key: str) -> str | None: ...
    async def kv_set(self, key: str, value: str) -> None: ...
    async def kv_delete(self, key: str) -> None: ...
