"""The running-bridge check: what a `ghl-bridge serve` on HOST:PORT says on /healthz."""

from __future__ import annotations

import httpx

from bot.doctor.base import RUNNING_BRIDGE, Check, _one_line
from bot.health import DATABASE_FIX
from bot.settings import Settings

# A running bridge answers /healthz within about a second.
HEALTHZ_TIMEOUT_SECONDS = 5.0


async def _running_bridge_check(settings: Settings) -> Check | None:
    """What a `ghl-bridge serve` on HOST:PORT says of itself (a worker that keeps failing, a
    database that stopped taking writes, Socket Mode down); nothing to say when PORT is 0."""
    if settings.port == 0:
        return None
    host = "127.0.0.1" if settings.host in {"", "0.0.0.0", "::"} else settings.host  # noqa: S104
    url = f"http://{f'[{host}]' if ':' in host else host}:{settings.port}/healthz"
    try:
        async with httpx.AsyncClient(timeout=HEALTHZ_TIMEOUT_SECONDS) as http:
            response = await http.get(url)
    except httpx.ConnectError:
        return Check(RUNNING_BRIDGE, True, f"none answers on {url} (not running here)")
    except httpx.HTTPError as exc:
        return Check(
            RUNNING_BRIDGE,
            False,
            f"{url} did not answer: {_one_line(exc) if str(exc) else type(exc).__name__}",
            "read the log of ghl-bridge serve; restart it if it hangs",
        )
    try:
        body = response.json()
    except ValueError:
        body = None
    status = body.get("status") if isinstance(body, dict) else None
    if response.status_code == 200 and status == "ok":
        return Check(RUNNING_BRIDGE, True, f"{url} says ok")
    if response.status_code == 503 and status == "unavailable" and isinstance(body, dict):
        reason = _one_line(body.get("reason") or "no reason given")
        return Check(RUNNING_BRIDGE, False, f"{url} says: {reason}", _bridge_fix(reason))
    return Check(
        RUNNING_BRIDGE,
        False,
        f"something other than ghl-bridge answers on {url} (HTTP {response.status_code})",
        "stop it, or set PORT to a free port",
    )


def _bridge_fix(reason: str) -> str:
    if "database" in reason:
        return DATABASE_FIX
    if "Socket Mode" in reason:
        return "check SLACK_APP_TOKEN (above) and the network to Slack; the bridge reconnects"
    return "the log of ghl-bridge serve shows the first failure with its traceback"
