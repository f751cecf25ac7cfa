"""Every setting the bridge reads from the environment (and `.env`): its default and what it
means, as `serve --help` prints them; `_model` checks the values."""

from __future__ import annotations

from importlib import resources
from typing import Annotated

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from bot.compose.quiet_hours import QuietHours
from bot.compose.signature import Signature

DEFAULT_SLACK_API_URL = "https://slack.com/api/"
DEFAULT_SLACK_AUTHORIZE_URL = "https://slack.com/oauth/v2/authorize"
DEFAULT_GHL_API_URL = "https://services.leadconnectorhq.com"
DEFAULT_GHL_MARKETPLACE_URL = "https://marketplace.gohighlevel.com"


def highlevel_webhook_key_pem() -> str:
    """HighLevel's published Ed25519 key for `x-ghl-signature`, shipped with the package."""
    return (
        resources.files("bot").joinpath("keys", "highlevel-webhook-ed25519.pem").read_text("ascii")
    )


class SettingsFields(BaseSettings):
    """The fields of Settings, which checks them."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=False,
        frozen=True,
    )

    slack_bot_token: SecretStr | None = Field(
        default=None,
        description="Bot User OAuth Token (xoxb-…) of the one workspace the bridge serves",
        json_schema_extra={"default_text": "required unless SLACK_CLIENT_ID is set"},
    )
    slack_client_id: str | None = Field(
        default=None,
        description="the Slack app's Client ID; with SLACK_CLIENT_SECRET, the app installs into "
        "any workspace at PUBLIC_URL/slack/install",
    )
    slack_client_secret: SecretStr | None = Field(
        default=None,
        description="the Slack app's Client Secret (Basic Information)",
        json_schema_extra={"default_text": "required with SLACK_CLIENT_ID"},
    )
    slack_authorize_url: str = Field(
        default=DEFAULT_SLACK_AUTHORIZE_URL,
        description="where /slack/install sends people to approve the app (the seam to a fake "
        "Slack)",
    )
    slack_signing_secret: SecretStr | None = Field(
        default=None,
        description="request signing secret (Basic Information)",
        json_schema_extra={"default_text": "required in HTTP mode"},
    )
    slack_app_token: SecretStr | None = Field(
        default=None,
        description="app-level token (xapp-…, connections:write); when set, Slack traffic uses "
        "Socket Mode",
    )
    slack_api_url: str = Field(
        default=DEFAULT_SLACK_API_URL,
        description="Slack Web API base URL (the seam to a fake Slack)",
    )
    slack_inbox_channel: str | None = Field(
        default=None,
        description="channel ID where inbound conversations with no thread yet are opened",
    )
    ghl_api_token: SecretStr | None = Field(
        default=None,
        description="a sub-account's Private Integration Token",
        json_schema_extra={"default_text": "required unless GHL_CLIENT_ID is set"},
    )
    ghl_location_id: str | None = Field(
        default=None,
        description="the sub-account (location) id of GHL_API_TOKEN",
        json_schema_extra={"default_text": "required with GHL_API_TOKEN"},
    )
    ghl_client_id: str | None = Field(
        default=None,
        description="Marketplace app Client ID; with GHL_CLIENT_SECRET, sub-accounts connect "
        "through OAuth (/ghl/install)",
    )
    ghl_client_secret: SecretStr | None = Field(
        default=None,
        description="Marketplace app Client Secret",
        json_schema_extra={"default_text": "required with GHL_CLIENT_ID"},
    )
    ghl_app_id: str | None = Field(
        default=None,
        description="Marketplace app id (for an agency install's list of sub-accounts)",
        json_schema_extra={"default_text": "GHL_CLIENT_ID up to its first -"},
    )
    public_url: str | None = Field(
        default=None,
        description="the bridge's public base URL; OAuth redirects to "
        "PUBLIC_URL/ghl/oauth/callback and PUBLIC_URL/slack/oauth_redirect",
        json_schema_extra={"default_text": "required with GHL_CLIENT_ID or SLACK_CLIENT_ID"},
    )
    ghl_marketplace_url: str = Field(
        default=DEFAULT_GHL_MARKETPLACE_URL,
        description="HighLevel Marketplace base URL, where /ghl/install sends people to choose "
        "sub-accounts (the seam to a simulator)",
    )
    token_encryption_key: SecretStr | None = Field(
        default=None,
        description="Fernet key encrypting stored HighLevel and Slack tokens (`ghl-bridge "
        "keygen` prints one)",
        json_schema_extra={"default_text": "required with GHL_CLIENT_ID or SLACK_CLIENT_ID"},
    )
    ghl_api_url: str = Field(default=DEFAULT_GHL_API_URL, description="HighLevel API base URL")
    ghl_webhook_public_key: str = Field(
        default_factory=highlevel_webhook_key_pem,
        description="Ed25519 public key (PEM; \\n escapes allowed) verifying x-ghl-signature",
        json_schema_extra={"default_text": "HighLevel's published key (bot/keys/)"},
    )
    database_url: str = Field(
        default="sqlite:///ghl-bridge.sqlite3",
        description="sqlite:///relative/path or sqlite:////absolute/path (one instance), or "
        "postgresql://user:password@host:5432/database (one or several instances)",
    )
    instance_id: str = Field(
        default="",
        max_length=64,
        description="this instance's name in logs and /metrics (its claims carry it too, with "
        "a suffix new at every start); empty: a random id per start",
    )
    lease_seconds: float = Field(
        default=30.0,
        ge=3.0,
        le=600.0,
        description="how long a send or inbound event an instance is working on stays its own "
        "without renewal; another instance takes over the claims of a dead one after this",
    )
    host: str = Field(
        default="0.0.0.0",  # noqa: S104 - a server is meant to be reachable; HOST narrows it
        description="HTTP listen address",
    )
    port: int = Field(  # 0: any free port (tests)
        default=3000, ge=0, le=65535, description="HTTP listen port (0 picks a free port)"
    )
    phone_default_region: str = Field(
        default="US", description="region for numbers written without +"
    )
    ghl_poll_seconds: int = Field(
        default=30, ge=0, description="inbound polling interval in seconds; 0 disables"
    )
    max_inbound_file_mb: float = Field(
        default=20.0,
        gt=0,
        le=1000,
        description="largest customer attachment copied into Slack, in MB; a bigger one is "
        "posted as a link with the reason",
    )
    # How long a HighLevel request may take before the bridge gives up on its answer.
    # Data retention (bot/retention.py): message bodies older than this are purged.
    message_retention_days: int | None = Field(
        default=None,
        ge=1,
        description="message bodies, subjects, addresses and attachment URLs older than this "
        "many days are purged from the database (the thread map and the audit stay)",
        json_schema_extra={"default_text": "unset (keep everything)"},
    )
    ghl_timeout_seconds: float = Field(
        default=20.0,
        gt=0,
        description="how long to wait for HighLevel's answer before treating the outcome as "
        "unknown",
    )
    allowed_slack_users: Annotated[frozenset[str], NoDecode] = Field(
        default=frozenset(),
        description="optional comma-separated allowlist of Slack user IDs (T…:U… for one "
        "workspace only)",
        json_schema_extra={"default_text": "unset (everyone)"},
    )
    allowed_slack_channels: Annotated[frozenset[str], NoDecode] = Field(
        default=frozenset(),
        description="optional comma-separated allowlist of Slack channel IDs (T…:C… for one "
        "workspace only)",
        json_schema_extra={"default_text": "unset (everyone)"},
    )
    admin_slack_users: Annotated[frozenset[str], NoDecode] = Field(
        default=frozenset(),
        description="comma-separated Slack user IDs (T…:U… for one workspace only) who may link "
        "channels to sub-accounts, "
        "beside the workspace's admins and owners",
        json_schema_extra={"default_text": "unset (admins and owners only)"},
    )
    slack_post_rate: float = Field(
        default=1.0,
        gt=0,
        description="posts per second per channel (Slack allows about 1, with short bursts)",
    )
    # The composer (bot/compose/): quiet hours and the sender's signature.
    quiet_hours: Annotated[QuietHours | None, NoDecode] = Field(
        default=None,
        description="a daily window such as 21:00-08:00 in the contact's time zone in which texts "
        "are held: the composer offers to schedule for its end or to send anyway",
        json_schema_extra={"default_text": "unset (off)"},
    )
    quiet_hours_tz: str = Field(
        default="UTC",
        description="the time zone for quiet hours when neither the contact nor the sub-account "
        "has one (an IANA name such as America/New_York)",
    )
    quiet_hours_email: bool = Field(
        default=False, description="whether quiet hours hold emails too"
    )
    signature: Annotated[Signature | None, NoDecode] = Field(
        default=None,
        description="appended to SMS, WhatsApp and email, filled from the sender's Slack "
        "profile, e.g. '— {first_name}, {team}' ({first_name} {last_name} {name} {title} "
        "{team} {email})",
        json_schema_extra={"default_text": "unset (off)"},
    )
    log_level: str = Field(default="INFO", description="DEBUG, INFO, WARNING or ERROR")
    # Slow and hostile clients (bot/http_guard.py). Slack wants an answer within 3 s, so a
    # request that takes seconds to arrive is of no use anyway.
    http_header_timeout_seconds: float = Field(
        default=5.0,
        gt=0,
        description="a connection whose request head has not fully arrived this many seconds "
        "after it opened (or after its first byte following an idle spell) is closed",
    )
    http_body_timeout_seconds: float = Field(
        default=5.0,
        gt=0,
        description="a request body not received within this many seconds gets 408 and the "
        "connection is closed",
    )
    # Longer than a reverse proxy's upstream keep-alive (nginx: 60 s), so the proxy closes first.
    http_idle_timeout_seconds: float = Field(
        default=75.0,
        gt=0,
        description="seconds after which an idle kept-alive connection is closed; keep it longer "
        "than a proxy's upstream keep-alive",
    )
    # Also kept below the open-file limit, whatever is set here.
    http_max_connections: int = Field(
        default=1000,
        ge=1,
        description="most connections open at once (also kept below the open-file limit); at "
        "the cap, the longest-waiting idle one makes room for a new one",
    )
    http_max_pending_bodies: int = Field(
        default=64,
        ge=1,
        description="request bodies read at once per route before their signature is checked; "
        "past that a webhook gets 429 with Retry-After, a Slack request 503",
    )
