"""Reading a Slack file the bridge is to send: files.info, then its private download with the
workspace's bot token (scope files:read)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
from slack_sdk.errors import SlackApiError

from bot.files.rules import SlackFileRef, size_text
from bot.posting.errors import WorkspaceGone
from bot.posting.poster import SlackPosters

log = logging.getLogger(__name__)

# files.info errors that mean the file will never be readable again.
_GONE = {
    "file_not_found": "it was deleted or is no longer shared with the app",
    "file_deleted": "it was deleted",
    "access_denied": "the app may not read it",
    "missing_scope": "the app lacks Slack's files:read permission (reinstall it)",
    "not_allowed_token_type": "the app's token may not read files",
}


@dataclass(frozen=True, slots=True)
class FileContent:
    name: str
    content_type: str
    data: bytes


class SlackFileError(Exception):
    """A Slack file could not be read; `lasting` when trying again cannot help."""

    def __init__(self, reason: str, *, lasting: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.lasting = lasting


class SlackFileReader:
    """Downloads Slack files with the workspace's token, never more than a size limit."""

    def __init__(self, *, slack: SlackPosters, http: httpx.AsyncClient, slack_api_url: str) -> None:
        self._slack = slack
        self._http = http
        self._api_host = urlsplit(slack_api_url).hostname or ""

    async def read(self, team_id: str, file: SlackFileRef, *, max_bytes: int) -> FileContent:
        try:
            poster = await self._slack.poster(team_id)
        except WorkspaceGone:
            raise SlackFileError(
                f"{file.name} can't be fetched from Slack: the app was removed from the workspace",
                lasting=True,
            ) from None
        client = poster.client
        try:
            info = await client.files_info(file=file.id)
        except SlackApiError as exc:
            error = str(exc.response.get("error") or "")
            why = _GONE.get(error)
            if why is not None:
                raise SlackFileError(
                    f"{file.name} can no longer be fetched from Slack: {why}.", lasting=True
                ) from None
            raise SlackFileError(
                f"Slack did not give {file.name} ({error or 'no answer'}).", lasting=False
            ) from None
        except (httpx.HTTPError, OSError, TimeoutError) as exc:
            raise SlackFileError(
                f"Slack did not answer about {file.name} ({type(exc).__name__}).", lasting=False
            ) from None
        data: dict[str, Any] = info.get("file") or {}
        size = int(data.get("size") or 0)
        if size > max_bytes:
            raise SlackFileError(
                f"{file.name} is {size_text(size)} now; the most is {size_text(max_bytes)}.",
                lasting=True,
            )
        url = str(data.get("url_private_download") or data.get("url_private") or "")
        if not self._trusted(url):
            # The bot token goes with the download: only ever to Slack's own hosts.
            raise SlackFileError(f"Slack gave no download for {file.name}.", lasting=True)
        token = client.token or ""
        content_type = str(data.get("mimetype") or file.mimetype or "application/octet-stream")
        body = await self._download(url, token, file.name, max_bytes)
        return FileContent(
            name=str(data.get("name") or file.name), content_type=content_type, data=body
        )

    def _trusted(self, url: str) -> bool:
        parts = urlsplit(url)
        host = parts.hostname or ""
        if parts.scheme not in {"https", "http"} or not host:
            return False
        if parts.scheme == "http" and host != self._api_host:
            return False
        return host == self._api_host or host == "slack.com" or host.endswith(".slack.com")

    async def _download(self, url: str, token: str, name: str, max_bytes: int) -> bytes:
        try:
            async with self._http.stream(
                "GET", url, headers={"Authorization": f"Bearer {token}"}
            ) as response:
                if response.status_code in {301, 302, 303, 307, 308}:
                    # Slack sends a download it won't serve to the sign-in page.
                    raise SlackFileError(
                        f"Slack refused to hand over {name} (the app may lack files:read).",
                        lasting=True,
                    )
                if response.status_code in {403, 404, 410}:
                    raise SlackFileError(
                        f"{name} can no longer be fetched from Slack (HTTP "
                        f"{response.status_code}).",
                        lasting=True,
                    )
                if response.status_code != 200:
                    raise SlackFileError(
                        f"Slack answered HTTP {response.status_code} for {name}.", lasting=False
                    )
                chunks: list[bytes] = []
                total = 0
                async for chunk in response.aiter_bytes():
                    total += len(chunk)
                    if total > max_bytes:
                        raise SlackFileError(
                            f"{name} is over {size_text(max_bytes)}.", lasting=True
                        )
                    chunks.append(chunk)
                return b"".join(chunks)
        except httpx.HTTPError as exc:
            raise SlackFileError(
                f"Downloading {name} from Slack failed ({type(exc).__name__}).", lasting=False
            ) from None
