"""`ghl-bridge doctor` for a Marketplace-app bridge: the app's settings, and each sub-account.

Each connected sub-account gets one cheap HighLevel call with its stored access token. The
doctor never refreshes a token: a refresh spends the single-use refresh token, and one whose
answer a diagnostic lost (or whose invalid_grant it met) would disconnect the sub-account
without its channels being told, which only `serve` does. A token about to expire is reported
with its expiry instead ("serve refreshes it"), and a refused one is reported, not acted on.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from urllib.parse import urlsplit

import httpx
from pydantic import SecretStr

from bot.doctor.base import Check, describe_age
from bot.highlevel import AuthError, HighLevelClient, HighLevelError
from bot.settings import Settings
from bot.tenancy.crypto import TokenCipher, TokenDecryptError, check_key
from storage import ChannelLink, LocationRecord, Store, StoreError, open_store

MARKETPLACE = "Marketplace app"
SUB_ACCOUNT = "sub-account"
NETWORK_TIMEOUT_SECONDS = 10.0
# A token with less left than this is not used by the doctor (serve refreshes it first).
NEAR_EXPIRY_SECONDS = 60.0
_LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
_HOW = {"pit": "GHL_API_TOKEN", "location": "Location OAuth", "company": "agency (Company) OAuth"}


async def account_checks(
    settings: Settings, *, clock: Callable[[], float] = time.time
) -> list[Check]:
    """The Marketplace settings and every sub-account in the store; nothing without OAuth
    (a Private Integration Token bridge has the HighLevel token check only)."""
    if not settings.oauth_enabled:
        return []
    checks = [marketplace_check(settings)]
    if not checks[0].ok and "TOKEN_ENCRYPTION_KEY" in checks[0].detail:
        return checks  # no stored token can be read without the key
    try:
        store = await open_store(settings.database_url)
    except StoreError:
        return checks  # the database check says why
    try:
        checks += await sub_account_checks(settings, store, clock=clock)
    except StoreError as exc:
        checks.append(Check(SUB_ACCOUNT, False, f"cannot read the sub-accounts: {exc}", None))
    finally:
        await store.close()
    return checks


def marketplace_check(settings: Settings) -> Check:
    """PUBLIC_URL's shape (HighLevel redirects browsers to it) and TOKEN_ENCRYPTION_KEY."""
    key = settings.token_encryption_key
    try:
        check_key(key.get_secret_value() if key is not None else "")
    except ValueError as exc:
        return Check(
            MARKETPLACE,
            False,
            f"TOKEN_ENCRYPTION_KEY is not usable: {exc}",
            "set it to the key `ghl-bridge keygen` printed when the tokens were first stored",
        )
    public = settings.public_url or ""
    parts = urlsplit(public)
    if not public:
        return Check(MARKETPLACE, False, "PUBLIC_URL is not set", "set PUBLIC_URL")
    if parts.scheme != "https" and (parts.hostname or "") not in _LOCAL_HOSTS:
        return Check(
            MARKETPLACE,
            False,
            f"PUBLIC_URL {public} is not https: HighLevel sends the install's code there",
            "serve the bridge over https and set PUBLIC_URL to that address",
        )
    if parts.path not in ("", "/"):
        note = f" (under the path {parts.path}: your proxy must pass it on)"
    else:
        note = ""
    return Check(
        MARKETPLACE,
        True,
        f"client {settings.ghl_client_id}, redirect URI {settings.oauth_redirect_uri} "
        f"(add it to the app's Redirect URLs){note}, install at {public}/ghl/install",
    )


async def sub_account_checks(
    settings: Settings, store: Store, *, clock: Callable[[], float] = time.time
) -> list[Check]:
    records = await store.list_locations()
    if not records:
        return [
            Check(
                SUB_ACCOUNT,
                False,
                "none connected yet",
                f"connect one at {settings.public_url}/ghl/install (or `/highlevel connect`)",
            )
        ]
    links = await store.list_channel_links()
    assert settings.token_encryption_key is not None  # noqa: S101 - oauth_enabled checked it
    cipher = TokenCipher(settings.token_encryption_key)
    now = clock()
    return [await _one(settings, record, links, cipher, now) for record in records]


async def _one(
    settings: Settings,
    record: LocationRecord,
    links: list[ChannelLink],
    cipher: TokenCipher,
    now: float,
) -> Check:
    label = f"{record.name} ({record.location_id})" if record.name else record.location_id
    name = f"{SUB_ACCOUNT} {label}"
    channels = sorted(f"<#{x.channel_id}>" for x in links if x.location_id == record.location_id)
    where = (
        f"channels {', '.join(channels)}" if channels else "no linked channel"
    ) + f"; inbox {record.inbox_channel_id or settings.slack_inbox_channel or 'none'}"
    how = _HOW.get(record.auth, record.auth)
    if record.status != "connected":
        return Check(
            name,
            False,
            f"disconnected ({record.disconnected_reason or 'no reason kept'}); was {how}; {where}",
            f"reconnect it at {settings.public_url}/ghl/install",
        )
    if record.auth == "pit":
        return Check(name, True, f"connected with {how} (checked above); {where}")
    expiry = _expiry(record, now)
    token = _token(record, cipher)
    if token is None:
        return Check(
            name,
            False,
            f"connected ({how}) but its stored token cannot be decrypted; {where}",
            "set TOKEN_ENCRYPTION_KEY to the key the tokens were stored with, or reconnect "
            f"at {settings.public_url}/ghl/install",
        )
    if record.expires_at is not None and record.expires_at - now < NEAR_EXPIRY_SECONDS:
        return Check(
            name,
            True,
            f"connected ({how}), token {expiry}: not called (the doctor never refreshes a "
            f"token: that spends its single-use refresh token; serve refreshes it); {where}",
        )
    problem = await _call(settings, record.location_id, token)
    if problem is not None:
        return Check(
            name,
            False,
            f"connected ({how}), token {expiry}, but {problem}; {where}",
            "run doctor again in a minute; if it persists, reconnect the sub-account at "
            f"{settings.public_url}/ghl/install",
        )
    return Check(name, True, f"connected ({how}), token {expiry}, reads conversations; {where}")


def _expiry(record: LocationRecord, now: float) -> str:
    if record.expires_at is None:
        return "expiry unknown"
    if record.expires_at <= now:
        return f"expired {describe_age(record.expires_at, now)}"
    seconds = record.expires_at - now
    if seconds < 120:
        return f"expires in {seconds:.0f} s"
    if seconds < 7200:
        return f"expires in {seconds / 60:.0f} min"
    return f"expires in {seconds / 3600:.1f} h"


def _token(record: LocationRecord, cipher: TokenCipher) -> SecretStr | None:
    if record.access_token is None:
        return None
    try:
        return cipher.decrypt(record.access_token)
    except TokenDecryptError:
        return None


async def _call(settings: Settings, location_id: str, token: SecretStr) -> str | None:
    """One conversation search with the token as it is; None when HighLevel answered."""
    try:
        async with HighLevelClient(
            token=token,
            location_id=location_id,
            base_url=settings.ghl_api_url,
            timeout=httpx.Timeout(NETWORK_TIMEOUT_SECONDS),
            max_read_attempts=1,
        ) as highlevel:
            await highlevel.search_conversations(limit=1)
    except AuthError as exc:
        return f"HighLevel refused its token ({exc.status_code}: {exc.message})"
    except HighLevelError as exc:
        return f"HighLevel did not answer ({exc.status_code or 'no answer'}: {exc.message})"
    return None
