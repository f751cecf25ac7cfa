"""What HighLevel accepts as a file (types, sizes per channel) and the file-serving faults."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "GENERIC_CONTENT_TYPES",
    "UPLOAD_CONTENT_TYPES",
    "UPLOAD_EXTENSIONS",
    "FileFaults",
    "extension_of",
    "media_type",
    "refused_type",
    "safe_filename",
]

# "The allowed file types are: JPG, JPEG, PNG, MP4, MPEG, ZIP, RAR, PDF, DOC, DOCX, TXT, MP3,
# WAV" (upload-file-attachments); VCF works too (highlevel-api-docs issue 233). Each maps to the
# declared content types that agree with it.
UPLOAD_CONTENT_TYPES: dict[str, frozenset[str]] = {
    "jpg": frozenset({"image/jpeg", "image/jpg", "image/pjpeg"}),
    "jpeg": frozenset({"image/jpeg", "image/jpg", "image/pjpeg"}),
    "png": frozenset({"image/png"}),
    "mp4": frozenset({"video/mp4", "audio/mp4", "application/mp4"}),
    "mpeg": frozenset({"video/mpeg", "audio/mpeg"}),
    "zip": frozenset({"application/zip", "application/x-zip-compressed", "application/x-zip"}),
    "rar": frozenset({"application/vnd.rar", "application/x-rar-compressed", "application/x-rar"}),
    "pdf": frozenset({"application/pdf", "application/x-pdf"}),
    "doc": frozenset({"application/msword"}),
    "docx": frozenset({"application/vnd.openxmlformats-officedocument.wordprocessingml.document"}),
    "txt": frozenset({"text/plain"}),
    "mp3": frozenset({"audio/mpeg", "audio/mp3", "audio/mpeg3"}),
    "wav": frozenset({"audio/wav", "audio/x-wav", "audio/wave", "audio/vnd.wave"}),
    "vcf": frozenset({"text/vcard", "text/x-vcard", "text/directory"}),
}
UPLOAD_EXTENSIONS = frozenset(UPLOAD_CONTENT_TYPES)
# Declared types that say nothing about the file: they never contradict the extension.
GENERIC_CONTENT_TYPES = frozenset({"", "application/octet-stream", "binary/octet-stream"})


def extension_of(filename: str) -> str:
    return filename.rsplit(".", 1)[-1].lower() if "." in filename else ""


def media_type(content_type: str | None) -> str:
    """``"Image/PNG; charset=x"`` -> ``"image/png"``."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def refused_type(filename: str, content_type: str | None) -> bool:
    """True when HighLevel would answer 415: an extension it does not take, or a declared
    content type that contradicts the extension (``x.pdf`` sent as ``application/x-msdownload``).
    """
    allowed = UPLOAD_CONTENT_TYPES.get(extension_of(filename))
    if allowed is None:
        return True
    declared = media_type(content_type)
    return declared not in GENERIC_CONTENT_TYPES and declared not in allowed


def safe_filename(filename: str) -> str:
    """A name usable as the last segment of a served URL (no path separators)."""
    cleaned = filename.replace("/", "_").replace("\\", "_").strip()
    return cleaned or "file"


@dataclass
class FileFaults:
    """What GETs and HEADs of served files (``/sandbox-files/...``) do wrong on purpose.

    Mutable while running. Counters (``*_next``) are consumed one per affected request. Waits
    end early when the simulator stops, so a test never waits them out.
    """

    latency: float = 0.0  # seconds before the answer starts
    error_next: int = 0  # the next N requests answer error_status (no body bytes)
    error_status: int = 503
    # Send the headers and this many body bytes, then hold stall_seconds before the rest: a
    # download that never finishes (the default 300 s) or a slow one (a short stall).
    stall_after_bytes: int | None = None
    stall_seconds: float = 300.0
