"""`GET /slack/install` and `GET /slack/oauth_redirect`: Slack's install flow (Bolt's), for a
person's browser. Every answer is a page or a redirect, never a 500."""

from __future__ import annotations

import logging

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.oauth.async_oauth_flow import AsyncOAuthFlow
from slack_bolt.response import BoltResponse

from bot.ui.oauth_pages import slack_install_off_page, slack_not_installed_page
from storage import StoreError

log = logging.getLogger(__name__)

NOT_SAVED = "The install could not be saved just now; nothing was installed. Try again shortly."


class SlackInstallPages:
    """The two routes; `flow` None when workspaces do not install the app (one bot token)."""

    def __init__(self, flow: AsyncOAuthFlow | None) -> None:
        self._flow = flow

    async def install(self, request: web.Request) -> web.StreamResponse:
        if self._flow is None:
            return _html(slack_install_off_page(), status=404)
        try:
            answer = await self._flow.handle_installation(await to_bolt_request(request))
        except StoreError as exc:
            log.warning("could not start a Slack install: %s", exc)
            return _html(slack_not_installed_page(NOT_SAVED, install_url=request.path), 503)
        return await to_aiohttp_response(answer)

    async def redirect(self, request: web.Request) -> web.StreamResponse:
        if self._flow is None:
            return _html(slack_install_off_page(), status=404)
        try:
            answer: BoltResponse = await self._flow.handle_callback(await to_bolt_request(request))
        except StoreError as exc:
            log.warning("could not finish a Slack install: %s", exc)
            return _html(
                slack_not_installed_page(NOT_SAVED, install_url=self._flow.install_path), 503
            )
        return await to_aiohttp_response(answer)


def _html(page: str, status: int) -> web.Response:
    return web.Response(status=status, text=page, content_type="text/html", charset="utf-8")
