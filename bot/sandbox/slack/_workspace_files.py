"""Files of a workspace: what people uploaded, files.info, and the files_upload_v2 sequence
(files.getUploadURLExternal, the bytes to the upload URL, files.completeUploadExternal).

A workspace's files are seen by its own bot token only; another workspace's token finds nothing
(``file_not_found``). Every file of the workspace is visible to its bot, shared or not: a file a
person picked in a ``file_input`` is shared nowhere, yet Slack lets the app read it.
"""

from __future__ import annotations

import copy
import json
import secrets
import time
from collections.abc import Iterable, Sequence
from typing import Any

from bot.sandbox.slack._files import (
    ALT_TXT_MAX,
    FILE_INPUT_MAX_FILES,
    FileShare,
    SlackFile,
    guess_type,
)
from bot.sandbox.slack._models import JsonDict, SlackChannel, SlackMessage
from bot.sandbox.slack._workspace_state import WorkspaceState
from bot.sandbox.slack._workspace_support import (
    _THREAD_TS,
    ApiFailure,
    _int_arg,
    _missing,
    _str_arg,
)

# docs.slack.dev, files.completeUploadExternal: channel ids only (C, G, D, Z); Slack answers
# invalid_arguments for anything else, a user id included.
_CHANNEL_ID_PREFIXES = ("C", "G", "D", "Z")
# files.completeUploadExternal: "A maximum of 100 channels is allowed per request".
_MAX_SHARE_CHANNELS = 100


class FileMethods(WorkspaceState):
    """add_file and friends; files.info, files.getUploadURLExternal and
    files.completeUploadExternal."""

    # ------------------------------------------------------------------ seeding and reading

    def add_file(
        self,
        name: str,
        data: bytes,
        mimetype: str | None = None,
        *,
        user: str,
        title: str | None = None,
        alt_txt: str | None = None,
    ) -> SlackFile:
        """A file ``user`` uploaded in Slack (shared nowhere yet); the mimetype is guessed from
        the name when not given."""
        if user not in self._users:
            raise ValueError(f"unknown user {user} in {self.team_id}; add_user() them first")
        kind, filetype, pretty = guess_type(name, mimetype)
        file = SlackFile(
            id=self._new_id("F"),
            team_id=self.team_id,
            name=name,
            title=title or name,
            mimetype=kind,
            filetype=filetype,
            pretty_type=pretty,
            user=user,
            created=int(time.time()),
            data=bytes(data),
            alt_txt=alt_txt,
        )
        self._files[file.id] = file
        return file

    def file(self, file_id: str) -> SlackFile | None:
        """Any file of this workspace (pending, deleted and private ones included)."""
        return self._files.get(file_id)

    def files(self) -> list[SlackFile]:
        """Files people and the app can see: uploaded, completed, not deleted; oldest first."""
        return [f for f in self._files.values() if f.complete and not f.deleted]

    def delete_file(self, file_id: str) -> None:
        """Someone deleted the file: files.info answers ``file_deleted``, downloads 404, and
        messages carrying it show a tombstone, as Slack does."""
        file = self._files[file_id]
        file.deleted = True
        for share in file.shares:
            message = self.message(share.channel_id, share.ts)
            if message is not None and message.files is not None:
                message.files = [
                    {"id": f["id"], "mode": "tombstone"} if f.get("id") == file_id else f
                    for f in message.files
                ]

    def _unreadable_images(self, blocks: list[JsonDict]) -> list[str]:
        # docs.slack.dev (image block, slack_file): the file must be one the app can read;
        # a deleted or unknown one makes Slack refuse the whole message's blocks.
        problems = []
        for index, block in enumerate(blocks):
            slack_file = block.get("slack_file") if block.get("type") == "image" else None
            file_id = slack_file.get("id") if isinstance(slack_file, dict) else None
            if file_id is None:
                continue
            file = self._files.get(file_id)
            if file is None or file.deleted or not file.complete:
                problems.append(f"[ERROR] invalid slack file [json-pointer:/blocks/{index}]")
        return problems

    def file_api(self, file: SlackFile, *, with_shares: bool = True) -> JsonDict:
        """The file object Slack would show for ``file``."""
        return file.to_api(self._files_base(), with_shares=with_shares)

    def downloadable(self, file_id: str) -> SlackFile | None:
        """The file behind a url_private of this workspace, if it can be downloaded."""
        file = self._files.get(file_id)
        if file is None or file.deleted or not file.complete:
            return None
        return file

    def file_input_entry(self, element: JsonDict, answer: Any) -> JsonDict:
        """The state entry of a ``file_input`` a person filled with ``answer`` (file ids or
        ``SlackFile``s of this workspace); raises ValueError where Slack's picker would not
        let the person choose those files."""
        if isinstance(answer, dict) and "type" in answer:
            return dict(answer)  # the test spelled the entry out itself
        picked = list(answer or [])
        limit = element.get("max_files", FILE_INPUT_MAX_FILES)
        if len(picked) > limit:
            raise ValueError(f"{len(picked)} files picked; this file_input takes {limit} at most")
        found = self._own_files(picked)
        filetypes = element.get("filetypes") or []
        for file in found:
            if not file.matches_filetypes(filetypes):
                raise ValueError(f"{file.name} is not one of the file types {filetypes}")
        return {"type": "file_input", "files": [self.file_api(f) for f in found]}

    # ------------------------------------------------------------------ what people do

    def post_as_user(
        self,
        channel: str,
        user: str,
        text: str,
        *,
        thread_ts: str | None = None,
        blocks: list[JsonDict] | None = None,
        files: Sequence[SlackFile | str] | None = None,
    ) -> SlackMessage:
        """A person writes in a channel (or a thread), optionally with files of this workspace
        (``add_file``); the message carries them as Slack shows them."""
        found = self._own_files(files or [])
        message = super().post_as_user(channel, user, text, thread_ts=thread_ts, blocks=blocks)
        if found:
            self._attach(message, found, self._channels[channel], user)
        return message

    # ------------------------------------------------------------------ methods

    def _files_info(self, args: JsonDict) -> JsonDict:
        file_id = _str_arg(args, "file")
        if file_id is None:
            raise _missing("file")
        file = self._files.get(file_id)
        if file is None or not file.complete:
            raise ApiFailure("file_not_found")
        if file.deleted:
            raise ApiFailure("file_deleted")
        return {
            "file": self.file_api(file),
            "comments": [],
            "response_metadata": {"next_cursor": ""},
        }

    def _files_get_upload_url_external(self, args: JsonDict) -> JsonDict:
        filename = _str_arg(args, "filename")
        if filename is None:
            raise _missing("filename")
        if _str_arg(args, "length") is None:
            raise _missing("length")
        length = _int_arg(args, "length", 0)
        if length < 1:
            raise ApiFailure("invalid_arguments", messages=["[ERROR] invalid `length`"])
        alt_txt = _str_arg(args, "alt_txt")
        if alt_txt is not None and len(alt_txt) > ALT_TXT_MAX:
            raise ApiFailure("alt_txt_too_large")
        kind, filetype, pretty = guess_type(filename, None)
        ticket = secrets.token_urlsafe(18)
        file = SlackFile(
            id=self._new_id("F"),
            team_id=self.team_id,
            name=filename,
            title=filename,
            mimetype=kind,
            filetype=_str_arg(args, "snippet_type") or filetype,
            pretty_type=pretty,
            user=self.bot_user_id,
            created=int(time.time()),
            data=b"",
            alt_txt=alt_txt,
            complete=False,
            uploaded=False,
            declared_length=length,
            upload_ticket=ticket,
        )
        self._files[file.id] = file
        self._upload_tickets[ticket] = file.id
        return {"upload_url": f"{self._files_base()}upload/v1/{ticket}", "file_id": file.id}

    def file_pending_upload(self, ticket: str) -> SlackFile | None:
        """The file an upload URL of this workspace is for, until it is completed."""
        file = self._files.get(self._upload_tickets.get(ticket, ""))
        return file if file is not None and not file.complete else None

    def accept_upload(self, ticket: str, data: bytes) -> SlackFile | None:
        """The bytes POSTed to an upload URL; None when the ticket is not (or no longer) one of
        this workspace's. Uploading again before completing replaces the bytes (a retry)."""
        file = self.file_pending_upload(ticket)
        if file is None:
            return None
        file.data = bytes(data)
        file.uploaded = True
        return file

    def _files_complete_upload_external(self, args: JsonDict) -> JsonDict:
        entries = _file_entries(args.get("files"))
        found: list[tuple[SlackFile, str | None]] = []
        for entry in entries:
            file = self._files.get(entry["id"])
            # Unknown, another workspace's, never uploaded, or already completed ("This
            # method can only be called once"): Slack cannot find the upload.
            if file is None or file.complete or file.deleted or not file.uploaded:
                raise ApiFailure("file_not_found")
            if file.size != file.declared_length:
                # Undocumented name; the sandbox refuses bytes that differ from `length`.
                raise ApiFailure("file_upload_size_mismatch")
            title = entry.get("title")
            found.append((file, title if isinstance(title, str) and title else None))
        targets = self._share_targets(args)
        thread_ts = _str_arg(args, "thread_ts")
        if thread_ts is not None:
            if len(targets) > 1:
                raise ApiFailure(
                    "invalid_arguments", messages=["[ERROR] thread_ts needs a single channel"]
                )
            if not _THREAD_TS.match(thread_ts):
                raise ApiFailure("invalid_thread_ts")
        comment = _str_arg(args, "initial_comment")
        # "If the initial_comment field is provided, the blocks field is ignored."
        content = {"text": comment} if comment else {"blocks": args.get("blocks")}
        text, blocks = self._message_content(
            {k: v for k, v in content.items() if v is not None}, require_content=False
        )
        for file, title in found:
            file.complete = True
            file.title = title or file.name
            self._upload_tickets.pop(file.upload_ticket or "", None)
        files = [file for file, _ in found]
        for channel in targets:
            message = self._bot_message(channel, text, blocks, thread_ts=thread_ts)
            self._attach(message, files, channel, self.bot_user_id)
            if self.after_post is not None:
                self.after_post(message)
        return {"files": [self.file_api(f) for f in files]}

    # ------------------------------------------------------------------ helpers

    def _files_base(self) -> str:
        if self.file_base_url is None:
            raise RuntimeError("start() the Slack simulator before using files (URLs need it)")
        return self.file_base_url

    def _own_files(self, files: Iterable[SlackFile | str]) -> list[SlackFile]:
        found: list[SlackFile] = []
        for item in files:
            file_id = item.id if isinstance(item, SlackFile) else str(item)
            file = self._files.get(file_id)
            if file is None or not file.complete or file.deleted:
                raise ValueError(f"no file {file_id} in workspace {self.team_id}")
            found.append(file)
        return found

    def _attach(
        self, message: SlackMessage, files: list[SlackFile], channel: SlackChannel, user: str
    ) -> None:
        for file in files:
            file.shares.append(
                FileShare(
                    channel_id=channel.id,
                    channel_name=channel.name,
                    is_private=channel.is_private,
                    is_im=channel.is_im,
                    ts=message.ts,
                    thread_ts=message.thread_ts if message.is_reply else None,
                    user=user,
                )
            )
        message.files = [copy.deepcopy(self.file_api(f, with_shares=False)) for f in files]

    def _share_targets(self, args: JsonDict) -> list[SlackChannel]:
        """Where files.completeUploadExternal shares: ``channel_id`` and/or ``channels``."""
        wanted: list[str] = []
        channel_id = _str_arg(args, "channel_id")
        if channel_id is not None:
            if not channel_id.startswith(_CHANNEL_ID_PREFIXES):
                raise ApiFailure("invalid_arguments", messages=["[ERROR] invalid `channel_id`"])
            wanted.append(channel_id)
        listed = _str_arg(args, "channels")
        if listed is not None:
            wanted += [c.strip() for c in listed.split(",") if c.strip()]
        if len(wanted) > _MAX_SHARE_CHANNELS:
            raise ApiFailure("channels_limit_exceeded")
        targets: list[SlackChannel] = []
        for raw in dict.fromkeys(wanted):
            # `channels` also takes user ids (a DM); names are not channel ids.
            channel = self._resolve_channel({"channel": raw}, allow_names=raw in self._users)
            self._require_member(channel)
            if channel.is_archived:
                raise ApiFailure("is_archived")
            targets.append(channel)
        return targets


def _file_entries(raw: Any) -> list[JsonDict]:
    """files.completeUploadExternal ``files``: a JSON array (or its string) of ``{id, title}``."""
    if raw is None or raw == "":
        raise _missing("files")
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError as exc:
            raise ApiFailure("invalid_arguments", messages=["[ERROR] invalid `files`"]) from exc
    if not isinstance(raw, list) or not raw:
        raise ApiFailure("invalid_arguments", messages=["[ERROR] invalid `files`"])
    entries: list[JsonDict] = []
    for entry in raw:
        if not isinstance(entry, dict) or not isinstance(entry.get("id"), str):
            raise ApiFailure("invalid_arguments", messages=["[ERROR] each file needs an `id`"])
        entries.append(entry)
    return entries
