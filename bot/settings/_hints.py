"""What to tell a person about each setting when it is missing or malformed."""

from __future__ import annotations

HINTS: dict[str, str] = {
    "SLACK_BOT_TOKEN": (
        "set it to the app's Bot User OAuth Token (starts with xoxb-), or set "
        "SLACK_CLIENT_ID and SLACK_CLIENT_SECRET to install the app into workspaces"
    ),
    "SLACK_CLIENT_ID": "set it to the Slack app's Client ID (Basic Information)",
    "SLACK_CLIENT_SECRET": "set it to the Slack app's Client Secret, beside SLACK_CLIENT_ID",
    "SLACK_AUTHORIZE_URL": (
        "set it to an http(s) URL, or leave it unset for https://slack.com/oauth/v2/authorize"
    ),
    "SLACK_SIGNING_SECRET": (
        "set it to the app's Signing Secret (Basic Information), or set SLACK_APP_TOKEN "
        "to use Socket Mode"
    ),
    "SLACK_APP_TOKEN": "set it to an app-level token with connections:write (starts with xapp-)",
    "SLACK_API_URL": "set it to an http(s) URL ending in /api/, or leave it unset",
    "SLACK_INBOX_CHANNEL": "set it to a channel ID such as C0123456789",
    "GHL_API_TOKEN": (
        "set it to a sub-account's Private Integration Token (Settings → Private "
        "Integrations) and GHL_LOCATION_ID to its location id, or set GHL_CLIENT_ID and "
        "GHL_CLIENT_SECRET to connect sub-accounts through a Marketplace app"
    ),
    "GHL_LOCATION_ID": "set it to the HighLevel sub-account (location) id of GHL_API_TOKEN",
    "GHL_CLIENT_ID": "set it to the Marketplace app's Client ID (Advanced Settings → Auth)",
    "GHL_CLIENT_SECRET": "set it to the Marketplace app's Client Secret, beside GHL_CLIENT_ID",
    "GHL_APP_ID": (
        "set it to the Marketplace app's id, or leave it unset to take the part of "
        "GHL_CLIENT_ID before its first -"
    ),
    "PUBLIC_URL": (
        "set it to the bridge's public https base URL, such as https://bridge.example.com "
        "(HighLevel redirects to PUBLIC_URL/ghl/oauth/callback, Slack to "
        "PUBLIC_URL/slack/oauth_redirect)"
    ),
    "GHL_MARKETPLACE_URL": (
        "set it to an http(s) URL, or leave it unset for https://marketplace.gohighlevel.com"
    ),
    "TOKEN_ENCRYPTION_KEY": (
        "set it to a key printed by `ghl-bridge keygen` (it encrypts the stored HighLevel "
        "and Slack tokens; keep it, and the same on every instance)"
    ),
    "ADMIN_SLACK_USERS": "set it to comma-separated Slack user IDs, or leave it unset",
    "GHL_API_URL": "set it to an http(s) URL, or leave it unset for HighLevel's API",
    "GHL_WEBHOOK_PUBLIC_KEY": (
        "set it to an Ed25519 public key in PEM (\\n escapes allowed), or leave it unset "
        "for HighLevel's published key"
    ),
    "DATABASE_URL": (
        "set it to sqlite:///relative/path or sqlite:////absolute/path, or "
        "postgresql://user:password@host:5432/database"
    ),
    "HOST": "set it to an address to listen on, such as 0.0.0.0",
    "PORT": "set it to a port number from 1 to 65535 (0 picks a free one)",
    "PHONE_DEFAULT_REGION": "set it to a two-letter region code such as US or GB",
    "GHL_POLL_SECONDS": "set it to a whole number of seconds (0 disables polling)",
    "GHL_TIMEOUT_SECONDS": "set it to the seconds to wait for HighLevel's answer, such as 20",
    "ALLOWED_SLACK_USERS": "set it to comma-separated Slack user IDs, or leave it unset",
    "ALLOWED_SLACK_CHANNELS": "set it to comma-separated Slack channel IDs, or leave it unset",
    "SLACK_POST_RATE": "set it to posts per second per channel, such as 1 (Slack's pace)",
    "LOG_LEVEL": "set it to DEBUG, INFO, WARNING or ERROR",
    "HTTP_HEADER_TIMEOUT_SECONDS": "set it to the seconds a request head may take, such as 5",
    "HTTP_BODY_TIMEOUT_SECONDS": "set it to the seconds a request body may take, such as 5",
    "HTTP_IDLE_TIMEOUT_SECONDS": (
        "set it to the seconds an idle kept-alive connection stays open, such as 75"
    ),
    "HTTP_MAX_CONNECTIONS": "set it to a whole number of open connections, such as 1000",
    "HTTP_MAX_PENDING_BODIES": (
        "set it to how many request bodies each route reads at once before verifying them, "
        "such as 64"
    ),
    "INSTANCE_ID": "set it to a short name for this instance (64 characters at most), or unset it",
    "LEASE_SECONDS": "set it to a number of seconds from 3 to 600, such as 30",
}
