"""ghl-bridge: HighLevel conversations in Slack threads."""
