"""manifest.yml matches the code: what the app listens to, and exactly the bot scopes it needs."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

import pytest
import yaml
from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

import handlers
from bot.app import Bridge
from bot.compose.assist import ComposeAssist
from bot.deps import Deps
from bot.doctor import read_bot_scopes
from bot.outbound import OutboundService
from bot.outbound.finishing import SendFinisher
from bot.outbound.intents import ComposeIntents
from bot.server import build_web_app
from bot.settings import Settings
from bot.tenancy.accounts import SubAccounts
from bot.tenancy.crypto import generate_key
from bot.tenancy.routing import ChannelRouting
from bot.ui.thread_builder import CANCEL_ACTION, REPLY_ACTION, RESEND_ACTION, RETRY_ACTION
from handlers.shortcuts import REPLY_SHORTCUT

REPO = Path(__file__).resolve().parents[1]
MANIFEST_PATH = REPO / "manifest.yml"
# The app's own code: the simulators under bot/sandbox play Slack and are not the app.
APP_SOURCES = ("bot", "handlers")
NOT_THE_APP = REPO / "bot" / "sandbox"

# The bot scopes each Web API method needs ("Required scopes" on docs.slack.dev
# reference/methods/<method>). A conversations.* method needs the scope of each conversation type
# the bridge works in — public and private channels, DMs and group DMs — hence all four.
CONVERSATION_READ = frozenset({"channels:read", "groups:read", "im:read", "mpim:read"})
CONVERSATION_HISTORY = frozenset(
    {"channels:history", "groups:history", "im:history", "mpim:history"}
)
SCOPES_BY_METHOD: dict[str, frozenset[str]] = {
    # Called with the app-level token (connections:write), not the bot token: no bot scope.
    "apps.connections.open": frozenset(),
    "auth.test": frozenset(),
    "auth.revoke": frozenset(),
    # Authenticated by the app's client id and secret (the install's code exchange and token
    # refreshes), not by a token: no scope.
    "oauth.v2.access": frozenset(),
    "chat.postMessage": frozenset({"chat:write"}),
    "chat.postEphemeral": frozenset({"chat:write"}),
    "chat.update": frozenset({"chat:write"}),
    "chat.delete": frozenset({"chat:write"}),
    "conversations.info": CONVERSATION_READ,
    "conversations.history": CONVERSATION_HISTORY,
    "conversations.replies": CONVERSATION_HISTORY,
    "reactions.add": frozenset({"reactions:write"}),
    "reactions.remove": frozenset({"reactions:write"}),
    "users.info": frozenset({"users:read"}),
    "files.info": frozenset({"files:read"}),
    # slack_sdk's files_upload_v2: files.getUploadURLExternal and files.completeUploadExternal.
    "files.upload.v2": frozenset({"files:write"}),
    "views.open": frozenset(),
    "views.push": frozenset(),
    "views.update": frozenset(),
    # The Home tab, and the links in it to each thread: no scope (docs.slack.dev).
    "views.publish": frozenset(),
    "chat.getPermalink": frozenset(),
}
# Slash commands and shortcuts need this scope themselves (docs.slack.dev: scopes/commands).
COMMANDS_SCOPE = "commands"
# The bot scopes each Events API event needs ("Required scopes" on docs.slack.dev
# reference/events/<event>): the app's own lifecycle events need none.
SCOPES_BY_EVENT: dict[str, frozenset[str]] = {
    "app_uninstalled": frozenset(),
    "tokens_revoked": frozenset(),
    "app_home_opened": frozenset(),
}
# The host the manifest's URLs name until someone replaces it.
PLACEHOLDER_URL = "https://YOUR-HOST"

# slack_sdk names each method after the API's (chat.postMessage -> chat_postMessage).
_CLIENT_METHODS = frozenset(
    name
    for name in dir(AsyncWebClient)
    if not name.startswith("_") and callable(getattr(AsyncWebClient, name)) and name != "api_call"
)
_CALL = re.compile(r"\.([A-Za-z]\w*)\s*\(")
# users.info answers a profile's email only with users:read.email too (docs.slack.dev,
# reference/methods/users.info): a file that calls it and reads `profile.get("email")` needs it.
_PROFILE_EMAIL = re.compile(r"""profile\.get\(\s*["']email["']""")
EMAIL_SCOPE = "users:read.email"
_API_CALL = re.compile(r"\bapi_call\(\s*(?:api_method\s*=\s*)?[\"']([\w.]+)[\"']")


def manifest() -> dict[str, Any]:
    loaded = yaml.safe_load(MANIFEST_PATH.read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def app_sources() -> Iterator[Path]:
    for folder in APP_SOURCES:
        for path in sorted((REPO / folder).rglob("*.py")):
            if NOT_THE_APP not in path.parents:
                yield path


def web_api_methods_called() -> dict[str, set[str]]:
    """Slack Web API methods the app's code calls -> the files that call them."""
    found: dict[str, set[str]] = {}
    for path in app_sources():
        source = path.read_text(encoding="utf-8")
        names = {m for m in _CALL.findall(source) if m in _CLIENT_METHODS}
        methods = {name.replace("_", ".") for name in names} | set(_API_CALL.findall(source))
        for method in methods:
            found.setdefault(method, set()).add(str(path.relative_to(REPO)))
    return found


class ListenerRecorder:
    """Stands in for the Bolt app while `handlers.register_all` runs, recording each listener
    (`command`, `action`, `view`, `shortcut`, `event`, …) and what it listens for."""

    def __init__(self) -> None:
        self.registered: list[tuple[str, object]] = []

    def __getattr__(self, kind: str) -> Callable[..., Any]:
        def register(*args: Any, **kwargs: Any) -> Any:
            constraint = args[0] if args else next(iter(kwargs.values()), None)
            if callable(constraint):  # a bare decorator, e.g. @app.middleware
                self.registered.append((kind, None))
                return constraint
            self.registered.append((kind, constraint))
            return lambda listener: listener

        return register

    def of(self, kind: str) -> list[object]:
        return [constraint for k, constraint in self.registered if k == kind]


def settings_for(tmp_path: Path) -> Settings:
    return Settings(
        _env_file=None,
        slack_bot_token="xoxb-test",
        slack_signing_secret="test-secret",
        ghl_api_token="pit-test",
        ghl_location_id="loc123",
        ghl_api_url="http://127.0.0.1:9",  # nothing here calls it; a closed port proves it
        slack_api_url="http://127.0.0.1:9/api/",
        database_url=f"sqlite:///{tmp_path / 'bridge.sqlite3'}",
        # With an allowlist the access middleware registers too, so nothing is skipped.
        allowed_slack_users="U0AGENT",
    )


@pytest.fixture
def recorder(tmp_path: Path) -> ListenerRecorder:
    recording = ListenerRecorder()
    deps = Deps(
        settings=settings_for(tmp_path),
        outbound=cast(OutboundService, object()),  # only stored while registering
        intents=cast(ComposeIntents, object()),
        accounts=cast(SubAccounts, object()),
        routing=cast(ChannelRouting, object()),
        assist=cast(ComposeAssist, object()),
        finisher=cast(SendFinisher, object()),
    )
    handlers.register_all(cast(AsyncApp, recording), deps)
    return recording


def _matches(constraint: object, value: str) -> bool:
    if isinstance(constraint, re.Pattern):
        return constraint.fullmatch(value) is not None
    if isinstance(constraint, dict):
        return constraint.get("callback_id") == value or constraint.get("action_id") == value
    return constraint == value


# ---------------------------------------------------------------- listeners <-> manifest


def test_every_slash_command_the_app_handles_is_in_the_manifest_and_back(
    recorder: ListenerRecorder,
) -> None:
    registered = recorder.of("command")
    declared = [c["command"] for c in manifest()["features"]["slash_commands"]]
    assert registered and all(isinstance(c, str) for c in registered)
    assert sorted(cast(list[str], registered)) == sorted(declared)
    assert len(set(declared)) == len(declared)


def test_every_shortcut_the_app_handles_is_in_the_manifest_and_back(
    recorder: ListenerRecorder,
) -> None:
    shortcuts = manifest()["features"]["shortcuts"]
    declared = {s["callback_id"] for s in shortcuts}
    registered = recorder.of("shortcut")
    assert registered == [REPLY_SHORTCUT]
    assert all(any(_matches(c, d) for c in registered) for d in declared)
    assert all(any(_matches(c, d) for d in declared) for c in registered)
    reply = next(s for s in shortcuts if s["callback_id"] == REPLY_SHORTCUT)
    # The handler reads the message it was used on, so it is a message shortcut.
    assert reply["type"] == "message" and reply["name"] == "Reply via HighLevel"
    assert reply["description"]


def test_buttons_and_the_composer_are_handled_and_reach_the_app(
    recorder: ListenerRecorder,
) -> None:
    # Actions and modal callbacks are not listed in a manifest: they need interactivity on.
    actions = recorder.of("action")
    for button in (REPLY_ACTION, CANCEL_ACTION, RESEND_ACTION, RETRY_ACTION):
        assert any(_matches(c, button) for c in actions), f"no listener for the {button} button"
    assert recorder.of("view"), "the composer's submission has a listener"
    interactivity = manifest()["settings"]["interactivity"]
    assert interactivity["is_enabled"] is True
    assert interactivity["request_url"].startswith("https://")


def test_event_subscriptions_are_the_events_the_app_listens_to(
    recorder: ListenerRecorder,
) -> None:
    events = recorder.of("event") + recorder.of("message")
    subscriptions = manifest()["settings"].get("event_subscriptions") or {}
    subscribed = subscriptions.get("bot_events") or []
    assert sorted(str(e) for e in events) == sorted(subscribed)
    assert len(set(subscribed)) == len(subscribed)
    # Uninstalls and revoked tokens reach the bridge, so it forgets that workspace's tokens.
    assert {"app_uninstalled", "tokens_revoked"} <= set(subscribed)
    assert subscriptions["request_url"] == f"{PLACEHOLDER_URL}/slack/events"
    # The app reads no messages: only user-less bot events, no user_events.
    assert not subscriptions.get("user_events")


def test_the_redirect_url_is_where_the_bridge_sends_slack_back() -> None:
    # A distributed install (SLACK_CLIENT_ID) names this redirect_uri in its authorize link;
    # Slack refuses one that is not among the app's redirect URLs.
    settings = Settings(
        _env_file=None,
        slack_client_id="111.222",
        slack_client_secret="secret",
        slack_signing_secret="test-secret",
        public_url=PLACEHOLDER_URL,
        token_encryption_key=generate_key(),
        ghl_api_token="pit-test",
        ghl_location_id="loc123",
    )
    assert manifest()["oauth_config"]["redirect_urls"] == [settings.slack_redirect_uri]


async def test_the_recorder_saw_every_listener_the_real_app_has(
    recorder: ListenerRecorder, tmp_path: Path
) -> None:
    # Bridge.create builds the Bolt app `serve` runs; nothing else may add listeners to it.
    bridge = await Bridge.create(settings_for(tmp_path / "real"))
    try:
        listeners = bridge.bolt_app._async_listeners
        recorded = [k for k, _ in recorder.registered if k not in ("middleware", "use", "error")]
        assert len(listeners) == len(recorded)
        routes = {
            (route.method, route.resource.canonical)
            for route in build_web_app(bridge).router.routes()
            if route.resource is not None
        }
    finally:
        await bridge.aclose()
    # Every request URL in the manifest is the path the server answers Slack on.
    data = manifest()
    urls = [c["url"] for c in data["features"]["slash_commands"]]
    urls.append(data["settings"]["interactivity"]["request_url"])
    urls.append(data["settings"]["event_subscriptions"]["request_url"])
    for url in urls:
        assert ("POST", urlsplit(url).path) in routes, url


# ---------------------------------------------------------------- scopes


def test_bot_scopes_are_exactly_what_the_code_calls_need() -> None:
    called = web_api_methods_called()
    # The scan sees the calls it must (else it proves nothing).
    assert {
        "chat.postMessage",
        "chat.update",
        "conversations.info",
        "conversations.history",
        "conversations.replies",
        "views.open",
    } <= called.keys()
    unknown = {m: sorted(files) for m, files in called.items() if m not in SCOPES_BY_METHOD}
    assert not unknown, f"add these methods' scopes (docs.slack.dev) to SCOPES_BY_METHOD: {unknown}"
    needed = {scope for method in called for scope in SCOPES_BY_METHOD[method]}
    if any(
        _PROFILE_EMAIL.search((REPO / path).read_text()) for path in called.get("users.info", ())
    ):
        needed.add(EMAIL_SCOPE)
    data = manifest()
    events = (data["settings"].get("event_subscriptions") or {}).get("bot_events") or []
    unlisted = sorted(set(events) - SCOPES_BY_EVENT.keys())
    assert not unlisted, f"add these events' scopes (docs.slack.dev) to SCOPES_BY_EVENT: {unlisted}"
    needed |= {scope for event in events for scope in SCOPES_BY_EVENT[event]}
    if data["features"].get("slash_commands") or data["features"].get("shortcuts"):
        needed.add(COMMANDS_SCOPE)
    granted = data["oauth_config"]["scopes"]["bot"]
    assert len(set(granted)) == len(granted)
    assert sorted(needed - set(granted)) == [], "scopes the code needs but the manifest lacks"
    assert sorted(set(granted) - needed) == [], "scopes no code needs (ask for what is used)"


def test_the_scan_finds_a_new_call_and_an_api_call() -> None:
    source = 'await self._client.users_info(user=u)\nawait client.api_call("pins.add")\n'
    names = {m for m in _CALL.findall(source) if m in _CLIENT_METHODS}
    assert names == {"users_info"}
    assert _API_CALL.findall(source) == ["pins.add"]


def test_doctor_reads_the_same_scopes_as_slack_will() -> None:
    # `ghl-bridge doctor` compares the token's scopes with this list using its own reader.
    text = MANIFEST_PATH.read_text(encoding="utf-8")
    assert list(read_bot_scopes(text)) == manifest()["oauth_config"]["scopes"]["bot"]


# ---------------------------------------------------------------- shape


def test_manifest_has_what_slack_requires() -> None:
    data = manifest()
    info = data["display_information"]
    assert info["name"] and info["description"]
    # Slack refuses a long_description shorter than 174 or longer than 4,000 characters.
    assert 174 <= len(info["long_description"]) <= 4000
    assert re.fullmatch(r"#[0-9a-fA-F]{6}", info["background_color"])
    assert data["features"]["bot_user"]["display_name"]
    for command in data["features"]["slash_commands"]:
        assert command["command"].startswith("/")
        assert command["description"] and command["usage_hint"]
        assert command["should_escape"] is False  # the handlers parse raw text, not <@U…> ids
    settings = data["settings"]
    assert isinstance(settings["socket_mode_enabled"], bool)
    assert settings["org_deploy_enabled"] is False
    # A single SLACK_BOT_TOKEN cannot be refreshed: rotation stays off in the file, and only a
    # distributed install (SLACK_CLIENT_ID) may turn it on (README).
    assert settings["token_rotation_enabled"] is False


def test_the_highlevel_command_says_what_it_takes() -> None:
    command = next(
        c for c in manifest()["features"]["slash_commands"] if c["command"] == "/highlevel"
    )
    for word in ("status", "connect", "link", "inbox", "from", "help"):
        assert word in command["usage_hint"]
    # users.info tells who may link channels: the scan must see that call.
    assert "users.info" in web_api_methods_called()
    assert "users:read" in manifest()["oauth_config"]["scopes"]["bot"]
