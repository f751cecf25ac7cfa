"""Slack's install flow (Bolt's OAuth) over the bridge's own database: the installation store,
with tokens encrypted at rest, and the OAuth state store."""
