"""`GET /ghl/install` and `GET /ghl/oauth/callback`: connecting sub-accounts through the
Marketplace app. The browser of the person installing lands here; every answer is a page that
says what happened (never a 500)."""

from __future__ import annotations

import logging
from typing import Protocol

from aiohttp import web

from bot.highlevel import HighLevelError, InvalidGrantError
from bot.tenancy.install import InstallOutcome
from bot.ui.oauth_pages import connected_page, failed_page, not_configured_page
from storage import StoreError

log = logging.getLogger(__name__)

# HighLevel's codes are short tokens; anything past this is not one.
MAX_CODE_LENGTH = 512


class Installer(Protocol):
    """`bot.tenancy.install.OAuthInstaller`, as the pages use it."""

    def install_url(self) -> str: ...
    async def complete(self, code: str) -> InstallOutcome: ...


class OAuthPages:
    """The install and callback routes; `installer` None when OAuth is not configured."""

    def __init__(
        self, installer: Installer | None, *, on_connected: ConnectedHook | None = None
    ) -> None:
        self._installer = installer
        self._on_connected = on_connected

    async def install(self, request: web.Request) -> web.StreamResponse:
        if self._installer is None:
            return _html(not_configured_page(), status=404)
        raise web.HTTPFound(self._installer.install_url())

    async def callback(self, request: web.Request) -> web.StreamResponse:
        if self._installer is None:
            return _html(not_configured_page(), status=404)
        install_url = "/ghl/install"
        if "error" in request.query:
            # The person declined, or HighLevel refused the request.
            return _html(
                failed_page(
                    "HighLevel did not grant access, so nothing was connected.",
                    install_url=install_url,
                ),
                status=400,
            )
        code = request.query.get("code", "")
        if not code or len(code) > MAX_CODE_LENGTH or not code.isprintable():
            return _html(
                failed_page(
                    "This link has no valid authorization code. Start the install from the "
                    "beginning.",
                    install_url=install_url,
                ),
                status=400,
            )
        try:
            outcome = await self._installer.complete(code)
        except InvalidGrantError:
            return _html(
                failed_page(
                    "This authorization code was already used or has expired, so nothing was "
                    "connected. Each install link works once: start the install again.",
                    install_url=install_url,
                ),
                status=400,
            )
        except HighLevelError as exc:
            log.warning("a HighLevel install failed: %s", exc.message)
            return _html(
                failed_page(
                    f"HighLevel did not complete the install ({exc.message}). Try again in a "
                    "moment.",
                    install_url=install_url,
                ),
                status=502,
            )
        except StoreError as exc:
            log.warning("a HighLevel install could not be saved: %s", exc)
            return _html(
                failed_page(
                    "The bridge could not save the connection (its database is busy or "
                    "unavailable). Try again in a moment.",
                    install_url=install_url,
                ),
                status=503,
            )
        if self._on_connected is not None:
            await self._on_connected(outcome)
        log.info(
            "HighLevel %s install connected %d sub-accounts",
            outcome.kind,
            len(outcome.locations),
        )
        return _html(connected_page(outcome.kind, outcome.locations, outcome.failed))


class ConnectedHook(Protocol):
    async def __call__(self, outcome: InstallOutcome) -> None: ...


def _html(body: str, *, status: int = 200) -> web.Response:
    return web.Response(
        text=body,
        status=status,
        content_type="text/html",
        charset="utf-8",
        headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"},
    )
