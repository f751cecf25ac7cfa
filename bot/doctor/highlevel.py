"""The HighLevel checks: GHL_API_TOKEN against HighLevel's API, and the webhook key."""

from __future__ import annotations

import httpx
from cryptography.exceptions import UnsupportedAlgorithm

from bot.doctor.base import HIGHLEVEL_AUTH, NETWORK_TIMEOUT_SECONDS, WEBHOOK_KEY, Check, _one_line
from bot.highlevel import (
    AuthError,
    HighLevelClient,
    HighLevelError,
    NotFoundError,
    RateLimitedError,
    ServerError,
    UnavailableError,
)
from bot.settings import Settings, highlevel_webhook_key_pem
from bot.webhook_auth import WebhookVerifier

_HIGHLEVEL_SCOPES = (
    "conversations.readonly, conversations.write, conversations/message.readonly, "
    "conversations/message.write, contacts.readonly, contacts.write, users.readonly"
)


async def _highlevel_check(settings: Settings) -> Check:
    url = settings.ghl_api_url
    if settings.pit_location is None:
        return Check(
            HIGHLEVEL_AUTH,
            True,
            "no GHL_API_TOKEN: sub-accounts connect through the Marketplace app (/ghl/install)",
        )
    location, token = settings.pit_location
    try:
        async with HighLevelClient(
            token=token,
            location_id=location,
            base_url=url,
            timeout=httpx.Timeout(NETWORK_TIMEOUT_SECONDS),
            max_read_attempts=1,  # a check reports what it sees; no backoff
        ) as highlevel:
            found = await highlevel.search_conversations(limit=1)
    except AuthError as exc:
        return Check(
            HIGHLEVEL_AUTH,
            False,
            f"HighLevel refused GHL_API_TOKEN for location {location} "
            f"({exc.status_code}: {_one_line(exc.message)})",
            f"use a token of sub-account {location} (or fix GHL_LOCATION_ID) with the scopes "
            f"{_HIGHLEVEL_SCOPES}",
        )
    except UnavailableError as exc:
        return Check(
            HIGHLEVEL_AUTH,
            False,
            f"cannot reach GHL_API_URL {url}: {_one_line(exc.message)}",
            "check the network and proxy, or leave GHL_API_URL unset for HighLevel's API",
        )
    except RateLimitedError as exc:
        return Check(
            HIGHLEVEL_AUTH,
            False,
            f"HighLevel is rate-limiting location {location}",
            f"wait {max(1, round(exc.retry_after))} s and run doctor again",
        )
    except NotFoundError:
        return Check(
            HIGHLEVEL_AUTH,
            False,
            f"GHL_API_URL {url} does not look like HighLevel's API (404)",
            "leave GHL_API_URL unset for HighLevel's API",
        )
    except ServerError as exc:
        return Check(
            HIGHLEVEL_AUTH,
            False,
            f"HighLevel failed ({exc.status_code}: {_one_line(exc.message)})",
            "HighLevel is having trouble; run doctor again in a few minutes",
        )
    except HighLevelError as exc:
        return Check(
            HIGHLEVEL_AUTH,
            False,
            f"HighLevel answered {exc.status_code or 'oddly'}: {_one_line(exc.message)}",
            "check GHL_API_URL and GHL_LOCATION_ID",
        )
    total = f", {found.total} conversations" if found.total is not None else ""
    return Check(HIGHLEVEL_AUTH, True, f"reads conversations of location {location}{total}")


def _webhook_key_check(settings: Settings) -> Check:
    try:
        WebhookVerifier(settings.ghl_webhook_public_key)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        return Check(
            WEBHOOK_KEY,
            False,
            f"cannot load GHL_WEBHOOK_PUBLIC_KEY: {_one_line(exc)}",
            "set GHL_WEBHOOK_PUBLIC_KEY to HighLevel's Ed25519 public key (PEM), or leave it "
            "unset for HighLevel's published key",
        )
    published = settings.ghl_webhook_public_key.strip() == highlevel_webhook_key_pem().strip()
    whose = "HighLevel's published key" if published else "the key in GHL_WEBHOOK_PUBLIC_KEY"
    return Check(WEBHOOK_KEY, True, f"Ed25519 key loaded ({whose})")
