"""`ghl-bridge doctor`: checks the configuration against the real services, one line each.

Every check says what it found and, when it failed, the one thing to do about it. Checks that
depend on a failed one (the Slack scopes on a token Slack refused) are left out rather than
failing a second time for the same reason.

- `command`: the command's option, `diagnose` (the checks in order), the report and exit code.
- `base`: the Check record, the checks' names, and the text helpers they share.
- `slack`, `highlevel`, `database`, `bridge`: the checks of each service.
- `accounts`: the Marketplace app's settings and each connected sub-account.
- `manifest`: the reader of manifest.yml's bot scopes.
"""

from bot.doctor.base import (
    DATABASE,
    HIGHLEVEL_AUTH,
    INBOUND,
    NETWORK_TIMEOUT_SECONDS,
    RETENTION,
    RUNNING_BRIDGE,
    SETTINGS,
    SLACK_AUTH,
    SLACK_INBOX,
    SLACK_SCOPES,
    SOCKET_MODE,
    WEBHOOK_KEY,
    Check,
    describe_age,
)
from bot.doctor.bridge import HEALTHZ_TIMEOUT_SECONDS
from bot.doctor.command import (
    EXIT_BROKEN,
    EXIT_OK,
    EXIT_SETTINGS,
    add_arguments,
    diagnose,
    exit_code,
    render,
    run,
)
from bot.doctor.command import (
    _can_print_marks as _can_print_marks,
)
from bot.doctor.database import DOCTOR_KV_KEY
from bot.doctor.manifest import ManifestError, read_bot_scopes

__all__ = [
    "DATABASE",
    "DOCTOR_KV_KEY",
    "EXIT_BROKEN",
    "EXIT_OK",
    "EXIT_SETTINGS",
    "HEALTHZ_TIMEOUT_SECONDS",
    "HIGHLEVEL_AUTH",
    "INBOUND",
    "NETWORK_TIMEOUT_SECONDS",
    "RETENTION",
    "RUNNING_BRIDGE",
    "SETTINGS",
    "SLACK_AUTH",
    "SLACK_INBOX",
    "SLACK_SCOPES",
    "SOCKET_MODE",
    "WEBHOOK_KEY",
    "Check",
    "ManifestError",
    "add_arguments",
    "describe_age",
    "diagnose",
    "exit_code",
    "read_bot_scopes",
    "render",
    "run",
]
