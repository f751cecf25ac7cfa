"""Sandbox Slack: a fake Web API (``SlackSimulator``) and a driver that sends requests to the
app the way Slack does (``SlackDriver``)."""

from bot.sandbox.slack._faults import Fault, SlackFaults
from bot.sandbox.slack._files import FILE_DOWNLOAD, FILE_UPLOAD, FileShare, SlackFile
from bot.sandbox.slack._installs import OAuthCounters
from bot.sandbox.slack._models import (
    Enterprise,
    EphemeralMessage,
    MessageEdit,
    RecordedCall,
    ResponseUrlPost,
    SimView,
    SlackChannel,
    SlackMessage,
    SlackUser,
)
from bot.sandbox.slack._oauth import EventDelivery
from bot.sandbox.slack._workspace import SlackWorkspace
from bot.sandbox.slack.driver import (
    ACK_DEADLINE_SECONDS,
    DriverResult,
    OptionsLoadError,
    SlackDriver,
    SuggestedOptions,
    build_state_values,
    slack_signature,
)
from bot.sandbox.slack.simulator import DEFAULT_GRANTED_SCOPES, SlackSimulator

__all__ = [
    "ACK_DEADLINE_SECONDS",
    "DEFAULT_GRANTED_SCOPES",
    "FILE_DOWNLOAD",
    "FILE_UPLOAD",
    "DriverResult",
    "Enterprise",
    "EphemeralMessage",
    "EventDelivery",
    "Fault",
    "FileShare",
    "MessageEdit",
    "OAuthCounters",
    "OptionsLoadError",
    "RecordedCall",
    "ResponseUrlPost",
    "SimView",
    "SlackChannel",
    "SlackDriver",
    "SlackFaults",
    "SlackFile",
    "SlackMessage",
    "SlackSimulator",
    "SlackUser",
    "SlackWorkspace",
    "SuggestedOptions",
    "build_state_values",
    "slack_signature",
]
