"""Settings read from the environment (and `.env`), with one-line messages for what is wrong."""

from bot.settings._fields import (
    DEFAULT_GHL_API_URL,
    DEFAULT_GHL_MARKETPLACE_URL,
    DEFAULT_SLACK_API_URL,
    DEFAULT_SLACK_AUTHORIZE_URL,
    highlevel_webhook_key_pem,
)
from bot.settings._hints import HINTS
from bot.settings._model import Settings, SettingsError, load_settings
from bot.settings._problems import (
    describe_errors,
    highlevel_access_problem,
    listed,
    slack_access_problem,
)

__all__ = [
    "DEFAULT_GHL_API_URL",
    "DEFAULT_GHL_MARKETPLACE_URL",
    "DEFAULT_SLACK_API_URL",
    "DEFAULT_SLACK_AUTHORIZE_URL",
    "HINTS",
    "Settings",
    "SettingsError",
    "describe_errors",
    "highlevel_access_problem",
    "highlevel_webhook_key_pem",
    "listed",
    "load_settings",
    "slack_access_problem",
]
