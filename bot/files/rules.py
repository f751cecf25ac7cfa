"""What HighLevel takes as an attachment, per channel; pure, checked before anything is sent.

Sources (`../shared/ghl-spec/NOTES.md`): upload-file-attachments allows "JPG, JPEG, PNG, MP4,
MPEG, ZIP, RAR, PDF, DOC, DOCX, TXT, MP3, WAV" (VCF works too, HLD#233); initiate-file-upload
says "WHATSAPP for 100MB limit, others for 5MB".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bot.highlevel import MessageChannel

ALLOWED_EXTENSIONS: tuple[str, ...] = (
    "jpg",
    "jpeg",
    "png",
    "mp4",
    "mpeg",
    "zip",
    "rar",
    "pdf",
    "doc",
    "docx",
    "txt",
    "mp3",
    "wav",
    "vcf",
)
MAX_FILES_PER_SEND = 10  # Slack's file_input takes ten at most
MB = 1024 * 1024
_LIMITS = {MessageChannel.WHATSAPP: 100 * MB}
_DEFAULT_LIMIT = 5 * MB
# Channels whose sends carry `attachments` (Custom providers and the rest do not, as far as
# the bridge can promise).
FILE_CHANNELS = frozenset(
    {
        MessageChannel.SMS,
        MessageChannel.EMAIL,
        MessageChannel.WHATSAPP,
        MessageChannel.FB,
        MessageChannel.IG,
        MessageChannel.LIVE_CHAT,
    }
)


@dataclass(frozen=True, slots=True)
class SlackFileRef:
    """A Slack file picked for a send: what is known of it without downloading it."""

    id: str
    name: str
    mimetype: str = ""
    size: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "mimetype": self.mimetype, "size": self.size}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SlackFileRef:
        return cls(
            id=str(data["id"]),
            name=str(data.get("name") or data["id"]),
            mimetype=str(data.get("mimetype") or ""),
            size=int(data.get("size") or 0),
        )


def extension_of(name: str) -> str:
    return name.rsplit(".", 1)[-1].lower() if "." in name else ""


def channel_takes_files(channel: MessageChannel) -> bool:
    return channel in FILE_CHANNELS


def upload_limit_bytes(channel: MessageChannel) -> int:
    """The largest file HighLevel takes for `channel`."""
    return _LIMITS.get(channel, _DEFAULT_LIMIT)


def size_text(size: int) -> str:
    """`5 MB`, `1.2 MB`, `340 KB`: how a person reads a size."""
    if size >= MB:
        value = size / MB
        return f"{value:.0f} MB" if value >= 10 or value.is_integer() else f"{value:.1f} MB"
    return f"{max(1, round(size / 1024))} KB"


def file_problem(file: SlackFileRef, channel: MessageChannel, label: str) -> str | None:
    """Why HighLevel would refuse `file` on `channel` (shown as `label`), as a sentence
    naming both; else None."""
    if not channel_takes_files(channel):
        return f"{label} messages can't carry files, so {file.name} can't go with this one."
    if extension_of(file.name) not in ALLOWED_EXTENSIONS:
        kinds = ", ".join(e.upper() for e in ALLOWED_EXTENSIONS)
        return f"HighLevel doesn't take {file.name}'s type; it takes {kinds}."
    limit = upload_limit_bytes(channel)
    if file.size > limit:
        return (
            f"{file.name} is {size_text(file.size)}; {label} takes files up to {size_text(limit)}."
        )
    return None
