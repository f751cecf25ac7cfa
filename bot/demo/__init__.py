"""`ghl-bridge demo`: the whole product on this machine, a scripted conversation, no accounts.

It starts a `SandboxStack` (the HighLevel and Slack simulators and a real `ghl-bridge serve` on
loopback, with a throwaway SQLite file), plays a person in Slack — through signed requests, as
Slack sends them — and the customers in HighLevel, and checks that each step had its effect.
Then it prints what Slack would show, channel by channel and thread by thread, and the thread
map the bridge keeps in its database. It exits 1, naming the step, if any step did not happen.

- `command`: the command's options and `run`, the sandbox and database it plays in.
- `script`: the six steps of the conversation and what each waits for.
- `tenancy`: the last part, two sub-accounts in two channels and a token refresh.
- `slack_text`: Slack messages as the text a person reads.
- `console`: the progress lines, the transcript and the thread map, in colour on a terminal.
"""

from bot.demo.command import (
    DEFAULT_STEP_TIMEOUT,
    DEMO_SETTINGS,
    EXIT_OK,
    EXIT_STEP_FAILED,
    EXIT_USAGE,
    add_arguments,
    run,
)
from bot.demo.console import Console, use_color
from bot.demo.script import (
    ADA_NUMBER,
    ADA_REPLY,
    EMAIL_CC,
    EMAIL_SUBJECT,
    EMAIL_TEXT,
    GRACE_REPLY,
    GRACE_REPLY_CC,
    QUICK_TEXT,
    REFUSED_TEXT,
    SCHEDULED_TEXT,
    SEND,
    STEP_EMAIL,
    STEP_FAILURE,
    STEP_QUICK_SEND,
    STEP_REPLIES,
    STEP_SCHEDULE,
    STEP_THREADED_REPLY,
    STEPS,
    THREADED_REPLY,
    StepFailed,
)
from bot.demo.slack_text import SlackNames, readable, render_blocks, render_message

__all__ = [
    "ADA_NUMBER",
    "ADA_REPLY",
    "DEFAULT_STEP_TIMEOUT",
    "DEMO_SETTINGS",
    "EMAIL_CC",
    "EMAIL_SUBJECT",
    "EMAIL_TEXT",
    "EXIT_OK",
    "EXIT_STEP_FAILED",
    "EXIT_USAGE",
    "GRACE_REPLY",
    "GRACE_REPLY_CC",
    "QUICK_TEXT",
    "REFUSED_TEXT",
    "SCHEDULED_TEXT",
    "SEND",
    "STEPS",
    "STEP_EMAIL",
    "STEP_FAILURE",
    "STEP_QUICK_SEND",
    "STEP_REPLIES",
    "STEP_SCHEDULE",
    "STEP_THREADED_REPLY",
    "THREADED_REPLY",
    "Console",
    "SlackNames",
    "StepFailed",
    "add_arguments",
    "readable",
    "render_blocks",
    "render_message",
    "run",
    "use_color",
]
