"""Files in the sandbox Slack: the record, and the file object the Web API shows for it.

Shapes follow docs.slack.dev (reference/objects/file-object, files.info,
files.completeUploadExternal).
URLs point at the simulator (``files-pri/…`` for the private download, ``files-tmb/…`` for image
thumbnails), never at slack.com.
"""

from __future__ import annotations

import copy
import mimetypes
import secrets
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Final
from urllib.parse import quote

from bot.sandbox.slack._models import JsonDict

# Pseudo-method names for the two non-Web-API endpoints: used in ``sim.calls`` and as the
# ``method`` of ``sim.faults.inject(...)`` to make downloads or uploads slow or fail.
FILE_DOWNLOAD: Final = "file_download"
FILE_UPLOAD: Final = "file_upload"

# Scopes each file method needs (docs.slack.dev, "Required scopes"); downloads need files:read.
FILE_METHOD_SCOPES: Final = {
    "files.info": "files:read",
    "files.getUploadURLExternal": "files:write",
    "files.completeUploadExternal": "files:write",
}

# docs.slack.dev, file_input element: "Minimum of 1, maximum of 10. Defaults to 10".
FILE_INPUT_MAX_FILES: Final = 10
# files.getUploadURLExternal: alt_txt_too_large past 1000 characters.
ALT_TXT_MAX: Final = 1000
# Slack's largest upload (slack_sdk's MAX_V2_FILE_SIZE); the upload endpoint takes up to this.
MAX_UPLOAD_BYTES: Final = 1024 * 1024 * 1024

# Extension -> (filetype, pretty_type) as Slack names them; anything else is "binary".
_FILETYPES: Final = {
    "png": ("png", "PNG"),
    "jpg": ("jpg", "JPEG"),
    "jpeg": ("jpg", "JPEG"),
    "gif": ("gif", "GIF"),
    "webp": ("webp", "WebP"),
    "heic": ("heic", "HEIC"),
    "pdf": ("pdf", "PDF"),
    "txt": ("text", "Plain Text"),
    "csv": ("csv", "CSV"),
    "doc": ("doc", "Word Document"),
    "docx": ("docx", "Word Document"),
    "zip": ("zip", "Zip"),
    "mp3": ("mp3", "MP3"),
    "m4a": ("m4a", "M4A"),
    "wav": ("wav", "WAV"),
    "ogg": ("ogg", "Ogg Vorbis"),
    "mp4": ("mp4", "MPEG 4 Video"),
    "mpeg": ("mpg", "MPEG Video"),
    "mpg": ("mpg", "MPEG Video"),
    "webm": ("webm", "WebM"),
}


def extension(name: str) -> str:
    return PurePosixPath(name).suffix.lstrip(".").lower()


def guess_type(name: str, mimetype: str | None) -> tuple[str, str, str]:
    """``(mimetype, filetype, pretty_type)`` for a file called ``name``."""
    filetype, pretty = _FILETYPES.get(extension(name), ("binary", "Binary"))
    guessed = mimetype or mimetypes.guess_type(name)[0] or "application/octet-stream"
    return guessed, filetype, pretty


@dataclass(frozen=True)
class FileShare:
    """Where a file was shared: one message in one conversation."""

    channel_id: str
    channel_name: str
    is_private: bool
    is_im: bool
    ts: str
    thread_ts: str | None
    user: str


@dataclass
class SlackFile:
    """A file of one workspace: what a person uploaded, or what the app uploaded."""

    id: str
    team_id: str
    name: str
    title: str
    mimetype: str
    filetype: str
    pretty_type: str
    user: str
    created: int
    data: bytes = field(repr=False)
    alt_txt: str | None = None
    complete: bool = True
    """False until files.completeUploadExternal: such a file is seen by nobody."""
    uploaded: bool = True
    """False until the bytes reached the upload URL (files.getUploadURLExternal files)."""
    declared_length: int | None = None
    upload_ticket: str | None = None
    deleted: bool = False
    shares: list[FileShare] = field(default_factory=list)
    thumb_key: str = field(default_factory=lambda: secrets.token_hex(5))

    @property
    def size(self) -> int:
        return len(self.data)

    @property
    def is_image(self) -> bool:
        return self.mimetype.startswith("image/")

    def matches_filetypes(self, filetypes: list[str]) -> bool:
        """A file_input's ``filetypes`` (extensions) accept this file; empty accepts all."""
        wanted = {t.lower().lstrip(".") for t in filetypes}
        return not wanted or extension(self.name) in wanted or self.filetype in wanted

    def to_api(self, base_url: str, *, with_shares: bool = True) -> JsonDict:
        """The file object; ``with_shares`` False is the copy a message carries."""
        if self.deleted:
            return {"id": self.id, "mode": "tombstone"}
        key = f"{self.team_id}-{self.id}"
        name = quote(self.name)
        data: JsonDict = {
            "id": self.id,
            "created": self.created,
            "timestamp": self.created,
            "name": self.name,
            "title": self.title,
            "mimetype": self.mimetype,
            "filetype": self.filetype,
            "pretty_type": self.pretty_type,
            "user": self.user,
            "user_team": self.team_id,
            "editable": False,
            "size": self.size,
            "mode": "hosted",
            "is_external": False,
            "external_type": "",
            "is_public": any(not s.is_private and not s.is_im for s in self.shares),
            "public_url_shared": False,
            "display_as_bot": False,
            "username": "",
            "url_private": f"{base_url}files-pri/{key}/{name}",
            "url_private_download": f"{base_url}files-pri/{key}/download/{name}",
            "permalink": f"{base_url}files/{self.user}/{self.id}/{name}",
            "has_rich_preview": False,
            "file_access": "visible",
        }
        if self.alt_txt:
            data["alt_txt"] = self.alt_txt
        if self.is_image:
            stem = quote(PurePosixPath(self.name).stem)
            suffix = extension(self.name) or "png"
            for px in (64, 80, 160, 360, 480):
                data[f"thumb_{px}"] = (
                    f"{base_url}files-tmb/{key}-{self.thumb_key}/{stem}_{px}.{suffix}"
                )
        if with_shares:
            data.update(self._share_fields())
            data["comments_count"] = 0
        return data

    def _share_fields(self) -> JsonDict:
        shares: dict[str, dict[str, list[JsonDict]]] = {}
        channels: list[str] = []
        groups: list[str] = []
        ims: list[str] = []
        for share in self.shares:
            kind = "private" if share.is_private or share.is_im else "public"
            entry: JsonDict = {
                "reply_users": [],
                "reply_users_count": 0,
                "reply_count": 0,
                "ts": share.ts,
                "channel_name": share.channel_name,
                "team_id": self.team_id,
                "share_user_id": share.user,
            }
            if share.thread_ts is not None:
                entry["thread_ts"] = share.thread_ts
            shares.setdefault(kind, {}).setdefault(share.channel_id, []).append(entry)
            listed = ims if share.is_im else groups if share.is_private else channels
            if share.channel_id not in listed:
                listed.append(share.channel_id)
        fields: JsonDict = {"channels": channels, "groups": groups, "ims": ims}
        if shares:
            fields["shares"] = copy.deepcopy(shares)
        return fields
