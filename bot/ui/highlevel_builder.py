"""The `/highlevel` command's messages: each is (fallback text, blocks).

Sub-account names come from HighLevel and are escaped for mrkdwn; tokens are never shown.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Final

from slack_sdk.models.blocks import Block, ContextBlock, MarkdownTextObject, SectionBlock

from bot.tenancy.admin import AccountStatus
from bot.ui.thread_builder import SECTION_TEXT_MAX, clip, escape_clipped, escape_mrkdwn, mention
from storage import LocationRecord

COMMAND: Final = "/highlevel"
# Slack shows at most 50 blocks in a message: the status lists this many sub-accounts.
STATUS_ACCOUNTS_SHOWN: Final = 40
# A list of sub-accounts in a refusal names at most this many.
CHOICES_SHOWN: Final = 15
_NAME_MAX: Final = 80
_CHANNEL_ID = re.compile(r"[CGD][A-Z0-9]{2,}")

USAGE_LINES: Final = (
    f"*`{COMMAND} status`* — every HighLevel sub-account: how it is connected, its token, "
    "its channels and inbox, when it was last heard from.",
    f"*`{COMMAND} connect`* — how to connect a sub-account.",
    f"*`{COMMAND} link &lt;sub-account name or id&gt;`* — this channel works with that sub-account "
    "(`/sendsms` here sends from it).",
    f"*`{COMMAND} inbox`* — new conversations of this channel's sub-account open their "
    "threads here.",
    f"*`{COMMAND} from &lt;address&gt;`* — emails of this channel's sub-account without a From "
    f"address go out from that verified sender; `{COMMAND} from clear` removes it, "
    f"`{COMMAND} from` shows it.",
    f"*`{COMMAND} help`* — this message.",
)


def _section(text: str) -> SectionBlock:
    return SectionBlock(text=MarkdownTextObject(text=clip(text, SECTION_TEXT_MAX), verbatim=True))


def _context(text: str) -> ContextBlock:
    return ContextBlock(elements=[MarkdownTextObject(text=text, verbatim=True)])


def _plain(text: str) -> str:
    """Fallback text (still mrkdwn, so `&lt;` stays escaped) without bold or code marks."""
    return text.replace("*", "").replace("`", "")


def account_name(record: LocationRecord) -> str:
    """A sub-account's name as mrkdwn (escaped), or its id when it has no name."""
    return escape_clipped(record.name or record.location_id, _NAME_MAX)


def _named(record: LocationRecord) -> str:
    """Bold name and, when it has a name, the id to type."""
    if record.name:
        return f"*{account_name(record)}* (`{escape_mrkdwn(record.location_id)}`)"
    return f"`{escape_mrkdwn(record.location_id)}`"


def channel_ref(channel_id: str) -> str:
    """`<#C…>` for a well-formed channel id; anything else as escaped text."""
    if _CHANNEL_ID.fullmatch(channel_id):
        return f"<#{channel_id}>"
    return escape_clipped(channel_id, 40)


def _listing(records: Sequence[LocationRecord]) -> str:
    lines = [f"• {_named(record)}" for record in records[:CHOICES_SHOWN]]
    if len(records) > CHOICES_SHOWN:
        lines.append(f"• … and {len(records) - CHOICES_SHOWN} more (`{COMMAND} status`)")
    return "\n".join(lines)


def _message(text: str, *extra: str) -> tuple[str, list[Block]]:
    blocks: list[Block] = [_section(text)]
    blocks += [_section(part) for part in extra if part]
    fallback = " ".join(_plain(part) for part in (text, *extra) if part)
    return clip(fallback, 3000), blocks


# ---------------------------------------------------------------- help and connect


def usage_message() -> tuple[str, list[Block]]:
    """`/highlevel` alone, or `/highlevel help`."""
    note = (
        "`link`, `inbox` and changing `from` are for workspace admins and owners, and the "
        "people in `ADMIN_SLACK_USERS`. In a channel that is not linked, `/sendsms` uses the only "
        "connected sub-account, or asks which one when there are several."
    )
    text = "How to use /highlevel: " + " ".join(_plain(line) for line in USAGE_LINES)
    return text, [_section("\n".join(USAGE_LINES)), _context(note)]


def unknown_subcommand_message(word: str) -> tuple[str, list[Block]]:
    shown = escape_clipped(word, 40)
    text, blocks = usage_message()
    intro = f"`{COMMAND}` has no `{shown}`. This is what it does:"
    return f"{COMMAND} has no {shown}. {text}", [_section(intro), *blocks]


def connect_message(install_url: str | None) -> tuple[str, list[Block]]:
    """`/highlevel connect`: the install link (Marketplace app), or how to switch it on."""
    if install_url:
        return _message(
            f"*Connect a HighLevel sub-account:* <{install_url}|open the HighLevel install page>.",
            "Sign in to HighLevel and choose the sub-account (or, as an agency, the "
            "sub-accounts) to connect. Then link a channel to it here with "
            f"`{COMMAND} link &lt;sub-account name&gt;`, and see them all with `{COMMAND} status`.",
        )
    return _message(
        "*This bridge connects one HighLevel sub-account with a Private Integration Token* "
        "(`GHL_API_TOKEN` and `GHL_LOCATION_ID`), so there is nothing to connect from Slack.",
        "To connect more sub-accounts, switch on the HighLevel Marketplace app: create an app "
        "in the HighLevel Marketplace with the redirect URL "
        "`&lt;PUBLIC_URL&gt;/ghl/oauth/callback`, "
        "set `GHL_CLIENT_ID`, `GHL_CLIENT_SECRET`, `PUBLIC_URL` and `TOKEN_ENCRYPTION_KEY` "
        "(`ghl-bridge keygen` prints one), restart the bridge, and run "
        f"`{COMMAND} connect` again.",
    )


# ---------------------------------------------------------------- refusals


_ADMIN_ACTIONS: Final = {
    "link": "link a channel",
    "inbox": "choose a sub-account's inbox",
    "from": "change a sub-account's default From address",
}
# What `/highlevel inbox` and `/highlevel from` do to the channel's sub-account.
_CHANNEL_ACTIONS: Final = {
    "inbox": ("whose inbox it should be", "be an inbox"),
    "from": ("whose default From address to change", "have a default From address"),
}


def admins_only_message(subcommand: str, admin_ids: Iterable[str]) -> tuple[str, list[Block]]:
    """Someone who is not an admin tried `link`, `inbox` or to change `from`."""
    named = sorted(admin_ids)
    who = "Slack workspace admins and owners"
    if named:
        people = ", ".join(mention(user) for user in named[:10])
        who += f", and {people} (`ADMIN_SLACK_USERS`)"
    what = _ADMIN_ACTIONS.get(subcommand, "choose a sub-account's inbox")
    return _message(
        f"Only {who} can {what}.",
        f"Ask one of them to run `{COMMAND} {escape_mrkdwn(subcommand)}` in this channel.",
    )


def admin_check_failed_message(error: str) -> tuple[str, list[Block]]:
    """users.info failed, so it is not known whether the person is an admin."""
    how = ""
    if error == "missing_scope":
        how = (
            " The app needs the `users:read` scope: add it (it is in `manifest.yml`) and "
            "reinstall the app."
        )
    return _message(
        f"I couldn't check whether you are a workspace admin (Slack said "
        f"`{escape_clipped(error, 60)}`), so nothing was changed.{how}"
    )


def failure_message(what: str) -> tuple[str, list[Block]]:
    """Something failed; `what` says what was not done (no details of the failure)."""
    return _message(
        f":warning: {what} Try again in a moment; if it keeps failing, check the bridge's log."
    )


def none_connected_message(install_url: str | None) -> tuple[str, list[Block]]:
    how = (
        f"Connect one with `{COMMAND} connect`."
        if install_url
        else "Set `GHL_API_TOKEN` and `GHL_LOCATION_ID`, or switch on the Marketplace app "
        f"(`{COMMAND} connect` says how)."
    )
    return _message(f"No HighLevel sub-account is connected. {how}")


def unknown_account_message(
    query: str, connected: Sequence[LocationRecord]
) -> tuple[str, list[Block]]:
    """No connected sub-account has that name or id."""
    shown = escape_clipped(query.strip(), _NAME_MAX) or "(nothing)"
    if not query.strip():
        head = f"Name the sub-account: `{COMMAND} link &lt;sub-account name or id&gt;`."
    else:
        head = f"No connected HighLevel sub-account is called or has the id `{shown}`."
    return _message(head, "The connected ones:\n" + _listing(connected))


def ambiguous_account_message(
    query: str, candidates: Sequence[LocationRecord]
) -> tuple[str, list[Block]]:
    """Several connected sub-accounts match."""
    shown = escape_clipped(query.strip(), _NAME_MAX)
    return _message(
        f"`{shown}` could be any of these; type more of the name, or the id:",
        _listing(candidates),
    )


def link_first_message(
    choices: Sequence[LocationRecord], subcommand: str = "inbox"
) -> tuple[str, list[Block]]:
    """`/highlevel inbox` (or `from`) in an unlinked channel with several connected."""
    whose = _CHANNEL_ACTIONS.get(subcommand, _CHANNEL_ACTIONS["inbox"])[0]
    return _message(
        "Several HighLevel sub-accounts are connected and this channel is not linked to one, "
        f"so I can't tell {whose}. Link it first with "
        f"`{COMMAND} link &lt;sub-account name or id&gt;`, then run `{COMMAND} "
        f"{escape_mrkdwn(subcommand)}` again.",
        "The connected ones:\n" + _listing(choices),
    )


def claim_first_message(
    unclaimed: Sequence[LocationRecord], subcommand: str = "inbox"
) -> tuple[str, list[Block]]:
    """`/highlevel inbox` (or `from`) where no sub-account belongs to this workspace yet (per
    workspace)."""
    can = _CHANNEL_ACTIONS.get(subcommand, _CHANNEL_ACTIONS["inbox"])[1]
    return _message(
        "No HighLevel sub-account belongs to this Slack workspace yet, so this channel can't "
        f"{can}. Link it to one first with `{COMMAND} link &lt;sub-account name or id&gt;` "
        f"(that makes the sub-account this workspace's), then run `{COMMAND} "
        f"{escape_mrkdwn(subcommand)}` again.",
        "Not in any workspace yet:\n" + _listing(unclaimed),
    )


def taken_message() -> tuple[str, list[Block]]:
    """Per workspace: the sub-account was claimed by another workspace a moment ago."""
    return _message(
        "That HighLevel sub-account now belongs to another Slack workspace, so nothing was "
        "changed here.",
        f"`{COMMAND} status` shows the sub-accounts this workspace can use.",
    )


# ---------------------------------------------------------------- done


def linked_message(
    record: LocationRecord,
    channel_id: str,
    *,
    previous: str | None,
    already: bool,
    announced: bool,
) -> tuple[str, list[Block]]:
    """The ephemeral confirmation of `/highlevel link`."""
    where = channel_ref(channel_id)
    if already:
        head = f"{where} was already linked to {_named(record)}; nothing changed."
    else:
        was = f" (it was linked to `{escape_clipped(previous, _NAME_MAX)}`)" if previous else ""
        head = f"{where} is now linked to {_named(record)}{was}."
    detail = (
        "`/sendsms` and `/sendemail` here send from this sub-account. "
        f"To open its new conversations here too, run `{COMMAND} inbox`."
    )
    note = (
        ""
        if announced or already
        else ("I couldn't post a note about it in the channel (is the app in it? `/invite` it).")
    )
    return _message(head, detail, note)


def link_announcement(user_id: str, record: LocationRecord) -> tuple[str, list[Block]]:
    """The note everyone in the channel sees when it is linked."""
    text = (
        f"{mention(user_id)} linked this channel to the HighLevel sub-account "
        f"*{account_name(record)}*: messages sent from here go out from it."
    )
    return _plain(text), [_section(text)]


def inbox_message(record: LocationRecord, channel_id: str) -> tuple[str, list[Block]]:
    """The ephemeral confirmation of `/highlevel inbox`."""
    return _message(
        f"New conversations of {_named(record)} now open their threads in "
        f"{channel_ref(channel_id)}.",
        "Conversations that already have a thread keep it.",
    )


VERIFIED_SENDERS_ONLY: Final = (
    "HighLevel sends only from a verified sender of the sub-account, so make sure this address "
    "is one of them in HighLevel."
)


def _sender(address: str) -> str:
    return f"`{escape_clipped(address, 320)}`"


def sender_message(record: LocationRecord, *, changed: bool = False) -> tuple[str, list[Block]]:
    """`/highlevel from`: the channel's sub-account's default From address, or that it has
    none; `changed`: it was just set (or cleared)."""
    where = "Emails sent from this channel"
    if record.email_from is None:
        now = " now" if changed else ""
        return _message(
            f"{_named(record)} has no default From address{now}: {where.lower()} without a "
            "From address go out from HighLevel's default sender of the sub-account.",
            f"Set one with `{COMMAND} from &lt;address&gt;`.",
        )
    head = (
        f"{where} without a From address now go out from {_sender(record.email_from)} "
        f"({_named(record)})."
        if changed
        else f"The default From address of {_named(record)} is {_sender(record.email_from)}: "
        f"{where.lower()} without a From address go out from it."
    )
    return _message(
        head,
        VERIFIED_SENDERS_ONLY,
        f"The composer's From address still wins; `{COMMAND} from clear` removes the default.",
    )


def sender_invalid_message(reason: str) -> tuple[str, list[Block]]:
    """`/highlevel from <something that is not one email address>`: nothing changed."""
    return _message(
        f"That is not one email address, so nothing was changed: {escape_clipped(reason, 300)}",
        f"Use `{COMMAND} from name@example.com`, or `{COMMAND} from clear` to remove the default.",
    )


# ---------------------------------------------------------------- status


def relative(timestamp: float, now: float) -> str:
    """`timestamp` as "5 min ago" or "in 3 h", from `now`."""
    seconds = timestamp - now
    span = abs(seconds)
    if span < 45:
        return "just now" if seconds <= 0 else "in a few seconds"
    size, unit = next(
        (size, unit)
        for size, unit in ((86_400, "d"), (3_600, "h"), (60, "min"), (1, "s"))
        if span >= size
    )
    amount = max(1, round(span / size))
    return f"{amount} {unit} ago" if seconds < 0 else f"in {amount} {unit}"


_HOW: Final = {
    "pit": "Private Integration Token (`GHL_API_TOKEN`)",
    "location": "Marketplace app, sub-account install",
    "company": "Marketplace app, agency install",
}


def _token_line(record: LocationRecord, now: float) -> str:
    if record.status != "connected":
        reason = escape_clipped(record.disconnected_reason or "no reason recorded", 300)
        return f":red_circle: *Disconnected* {relative(record.updated_at, now)}: {reason}"
    if record.auth == "pit":
        return ":large_green_circle: Connected; the token is set in the bridge's settings."
    if record.expires_at is None:
        return ":large_green_circle: Connected; token expiry not known."
    if record.expires_at > now:
        return (
            ":large_green_circle: Connected; access token expires "
            f"{relative(record.expires_at, now)} (renewed automatically)."
        )
    return (
        ":large_yellow_circle: Connected; access token expired "
        f"{relative(record.expires_at, now)} and is renewed at its next use."
    )


def _seen(label: str, timestamp: float | None, now: float) -> str:
    return f"{label} {relative(timestamp, now) if timestamp is not None else 'never'}"


def _status_block(status: AccountStatus, now: float) -> SectionBlock:
    record = status.record
    channels = ", ".join(channel_ref(link.channel_id) for link in status.links[:20])
    if len(status.links) > 20:
        channels += f" and {len(status.links) - 20} more"
    if status.inbox_channel_id is None:
        inbox = "none (new conversations are not shown in Slack)"
    else:
        inbox = channel_ref(status.inbox_channel_id)
        if status.default_inbox:
            inbox += " (`SLACK_INBOX_CHANNEL`)"
    lines = [
        _named(record),
        _token_line(record, now),
        f"Connected by: {_HOW.get(record.auth, escape_mrkdwn(record.auth))}",
        f"Linked channels: {channels or 'none'}",
        f"Inbox: {inbox}",
        "Default From: "
        + (_sender(record.email_from) if record.email_from else "HighLevel's default sender"),
        " · ".join(
            (
                _seen("Last webhook", record.last_webhook_at, now),
                _seen("last poll", record.last_poll_at, now),
            )
        ),
    ]
    if status.unowned:
        lines.append(
            ":grey_question: Not in any workspace yet — "
            f"`{COMMAND} link` in a channel claims it for this workspace."
        )
    return _section("\n".join(lines))


def status_message(statuses: Sequence[AccountStatus], *, now: float) -> tuple[str, list[Block]]:
    """`/highlevel status`: every sub-account, connected and disconnected."""
    if not statuses:
        return _message(
            f"No HighLevel sub-account is known to this bridge. `{COMMAND} connect` says how "
            "to connect one."
        )
    connected = sum(1 for s in statuses if s.record.status == "connected")
    gone = len(statuses) - connected
    head = f"*HighLevel sub-accounts:* {connected} connected" + (
        f", {gone} disconnected" if gone else ""
    )
    blocks: list[Block] = [_section(head)]
    blocks += [_status_block(status, now) for status in statuses[:STATUS_ACCOUNTS_SHOWN]]
    if len(statuses) > STATUS_ACCOUNTS_SHOWN:
        blocks.append(
            _context(
                f"… and {len(statuses) - STATUS_ACCOUNTS_SHOWN} more; "
                "`ghl-bridge doctor` lists every one."
            )
        )
    names = ", ".join(account_name(s.record) for s in statuses[:CHOICES_SHOWN])
    text = f"{_plain(head)}: {names}"
    return clip(text, 3000), blocks
