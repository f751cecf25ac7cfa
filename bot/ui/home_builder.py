"""The App Home: conversations waiting for a reply per sub-account, the contact search modal,
and the root of a thread opened from it. Pure functions of the data they are given.

Everything that came from HighLevel or a person (contact names, addresses, message text,
sub-account names, the search text) is escaped for mrkdwn. The contact's name links to the
Slack thread (a chat.getPermalink link); a link that could not be had shows the name alone.
"""

from __future__ import annotations

import html
import json
import math
import re
from dataclasses import dataclass
from typing import Final

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ContextBlock,
    DividerBlock,
    HeaderBlock,
    InputBlock,
    MarkdownTextObject,
    PlainTextInputElement,
    SectionBlock,
)
from slack_sdk.models.views import View

from bot.ui.thread_builder import (
    PREVIEW_CHARACTERS,
    REPLY_ACTION,
    account_line,
    clip,
    escape_clipped,
    escape_mrkdwn,
)

HOME_SEARCH_ACTION: Final = "home_search"  # value: the sub-account's location id
HOME_REFRESH_ACTION: Final = "home_refresh"
HOME_OPEN_ACTION: Final = "home_open_contact"  # value: the contact id
HOME_SEARCH_CALLBACK: Final = "home_search"  # private_metadata: {"location_id": …}
QUERY_BLOCK: Final = "query"
QUERY_ACTION: Final = "query"

# Slack shows at most 100 blocks in a Home tab or a modal.
VIEW_BLOCKS_MAX: Final = 100
QUERY_MAX: Final = 100
RETENTION_NOTE: Final = "(message removed by retention)"
_CHANNEL_ID = re.compile(r"[CDG][A-Z0-9]{2,}")
_TAGS = re.compile(r"</?[A-Za-z][^>]*>")


@dataclass(frozen=True, slots=True)
class HomeConversation:
    """One conversation waiting for a reply. `preview` is the customer's newest message as
    plain text (None: none is stored), `removed` when retention purged it."""

    thread_id: int
    contact: str
    channel_id: str
    waiting_since: float
    permalink: str | None = None
    preview: str | None = None
    removed: bool = False
    message_channel: str | None = None  # "SMS", "Email", … of that message


@dataclass(frozen=True, slots=True)
class HomeAccount:
    """A sub-account the person can see, with its waiting conversations (oldest first) and
    how many wait in all."""

    location_id: str
    name: str
    waiting: tuple[HomeConversation, ...]
    waiting_count: int


@dataclass(frozen=True, slots=True)
class HomePage:
    """What a person's Home tab shows at `now` (epoch seconds)."""

    accounts: tuple[HomeAccount, ...]
    now: float
    allowed: bool = True
    connect_hint: str = "An admin can connect one with `/highlevel connect`."


@dataclass(frozen=True, slots=True)
class ContactHit:
    """A contact the search found."""

    contact_id: str
    label: str
    phone: str | None = None
    email: str | None = None


@dataclass(frozen=True, slots=True)
class OpenedThread:
    """The thread a search opened: `created` when its root was posted just now."""

    contact: str
    channel_id: str
    permalink: str | None
    created: bool


@dataclass(frozen=True, slots=True)
class SearchState:
    """The search modal: the sub-account, what was searched and found (None: nothing yet),
    the thread opened from it, and a problem to show."""

    location_id: str
    account: str
    query: str = ""
    results: tuple[ContactHit, ...] | None = None
    opened: OpenedThread | None = None
    problem: str | None = None


# ---------------------------------------------------------------- small parts


def age_text(seconds: float) -> str:
    """How long something has waited, in the largest whole unit ("3 min", "2 h", "4 d")."""
    if not math.isfinite(seconds) or seconds < 60:
        return "under a minute"
    minutes = int(seconds // 60)
    if minutes < 60:
        return f"{minutes} min"
    hours = minutes // 60
    if hours < 48:
        return f"{hours} h"
    return f"{hours // 24} d"


def _channel(channel_id: str) -> str:
    return f"<#{channel_id}>" if _CHANNEL_ID.fullmatch(channel_id) else escape_mrkdwn(channel_id)


def _link(url: str | None, label: str) -> str:
    """`label` (already mrkdwn) linked to `url` when it is a plain https URL."""
    if url and url.startswith("https://") and not re.search(r"[\s<>|]", url):
        return f"<{url}|{label}>"
    return label


def preview_text(text: str) -> str:
    """A message body as a one-line preview: the tags of an HTML email dropped (one starts and
    ends with a tag; a plain text may still say "a<b and c>d"), entities read, spaces folded,
    clipped (not escaped yet)."""
    body = text.strip()
    if body.startswith("<") and body.endswith(">") and _TAGS.search(body):
        body = html.unescape(_TAGS.sub(" ", body))
    return clip(" ".join(body.split()), PREVIEW_CHARACTERS)


def _conversation_block(item: HomeConversation, now: float) -> SectionBlock:
    name = _link(item.permalink, f"*{escape_clipped(item.contact or 'Unknown contact', 150)}*")
    lines = [
        f"{name} in {_channel(item.channel_id)} · waiting {age_text(now - item.waiting_since)}"
    ]
    if item.removed:
        lines.append(f"> _{RETENTION_NOTE}_")
    elif item.preview is not None:
        body = escape_mrkdwn(preview_text(item.preview)) or "_(no text)_"
        via = f"{escape_clipped(item.message_channel, 40)}: " if item.message_channel else ""
        lines.append(f"> {via}{body}")
    return SectionBlock(
        block_id=f"waiting-{item.thread_id}",
        text=MarkdownTextObject(text="\n".join(lines), verbatim=True),
    )


def _account_blocks(account: HomeAccount, now: float, budget: int) -> list[Block]:
    """The sub-account's blocks, at most `budget` of them (its header always)."""
    count = account.waiting_count
    title = f"*{escape_clipped(account.name, 150)}*"
    title += f" · {count} waiting" if count else ""
    search = ButtonElement(
        text="Find a contact", action_id=HOME_SEARCH_ACTION, value=account.location_id
    )
    blocks: list[Block] = [
        SectionBlock(
            block_id=f"account-{account.location_id}"[:255],
            text=MarkdownTextObject(text=title, verbatim=True),
            accessory=search,
        )
    ]
    if budget < 2:
        return blocks  # the header alone says how many wait
    if not account.waiting:
        blocks.append(ContextBlock(elements=[MarkdownTextObject(text="Nothing is waiting.")]))
        return blocks
    everything = len(account.waiting) == count and count <= budget - 1
    # The header, and unless all fit, the line saying how many more wait.
    room = budget - 1 if everything else budget - 2
    shown = account.waiting[:room]
    blocks += [_conversation_block(item, now) for item in shown]
    more = count - len(shown)
    if more > 0:
        note = f"and {more} more waiting (the oldest are shown first)"
        blocks.append(ContextBlock(elements=[MarkdownTextObject(text=note)]))
    return blocks


# ---------------------------------------------------------------- the Home tab


def home_view(page: HomePage) -> View:
    """The Home tab: per sub-account, its conversations waiting for a reply, oldest first."""
    blocks: list[Block] = [
        HeaderBlock(text="Waiting for a reply"),
        ActionsBlock(
            block_id="home-actions",
            elements=[ButtonElement(text="Refresh", action_id=HOME_REFRESH_ACTION, value="1")],
        ),
    ]
    if not page.allowed:
        text = "This bridge is limited to some people, and you are not one of them."
        blocks = [blocks[0], SectionBlock(text=MarkdownTextObject(text=text))]
        return View(type="home", blocks=blocks)
    if not page.accounts:
        blocks.append(SectionBlock(text=MarkdownTextObject(text="Nothing is waiting for a reply.")))
        hint = "No HighLevel sub-account is connected to this workspace yet. " + page.connect_hint
        hint += " Then link a channel to it with `/highlevel link <sub-account>`."
        blocks.append(ContextBlock(elements=[MarkdownTextObject(text=hint)]))
        return View(type="home", blocks=blocks)
    if not any(account.waiting_count for account in page.accounts):
        blocks.append(SectionBlock(text=MarkdownTextObject(text="Nothing is waiting for a reply.")))
    for index, account in enumerate(page.accounts):
        # A divider, and at least a header, for each sub-account still to come.
        left = len(page.accounts) - index - 1
        budget = VIEW_BLOCKS_MAX - len(blocks) - 1 - 2 * left
        if budget < 1:
            break
        blocks.append(DividerBlock())
        blocks += _account_blocks(account, page.now, budget)
    return View(type="home", blocks=blocks)


# ---------------------------------------------------------------- the search modal


def search_metadata(location_id: str) -> str:
    return json.dumps({"location_id": location_id})


def location_of(private_metadata: str) -> str | None:
    """The sub-account a search modal is about (None: not one of ours)."""
    try:
        data = json.loads(private_metadata or "{}")
    except ValueError:
        return None
    value = data.get("location_id") if isinstance(data, dict) else None
    return value if isinstance(value, str) and value else None


def _hit_block(hit: ContactHit) -> SectionBlock:
    parts = [f"*{escape_clipped(hit.label or hit.contact_id, 150)}*"]
    parts += [escape_clipped(value, 320) for value in (hit.phone, hit.email) if value]
    return SectionBlock(
        block_id=f"contact-{hit.contact_id}"[:255],
        text=MarkdownTextObject(text=" · ".join(parts), verbatim=True),
        accessory=ButtonElement(text="Open", action_id=HOME_OPEN_ACTION, value=hit.contact_id),
    )


def _opened_block(opened: OpenedThread) -> SectionBlock:
    label = _link(opened.permalink, f"the thread with *{escape_clipped(opened.contact, 150)}*")
    verb = "Opened" if opened.created else "Here is"
    text = f":speech_balloon: {verb} {label} in {_channel(opened.channel_id)}."
    return SectionBlock(block_id="opened", text=MarkdownTextObject(text=text, verbatim=True))


def search_modal(state: SearchState) -> View:
    """The contact search of one sub-account: a name, phone or email, the contacts found,
    and an Open button on each."""
    blocks: list[Block] = [
        InputBlock(
            block_id=QUERY_BLOCK,
            label="Name, phone or email",
            element=PlainTextInputElement(
                action_id=QUERY_ACTION,
                initial_value=clip(state.query, QUERY_MAX) or None,
                max_length=QUERY_MAX,
                placeholder="Ada, +1 415 555 0100, ada@example.com",
            ),
        ),
        ContextBlock(
            elements=[
                MarkdownTextObject(text=account_line(state.account) or "HighLevel sub-account")
            ]
        ),
    ]
    if state.opened is not None:
        blocks.append(_opened_block(state.opened))
    if state.problem:
        text = f":warning: {escape_clipped(state.problem, 500)}"
        blocks.append(SectionBlock(text=MarkdownTextObject(text=text, verbatim=True)))
    if state.results is not None:
        if not state.results:
            searched = escape_clipped(state.query, QUERY_MAX)
            text = f"No contact matches “{searched}”."
            blocks.append(SectionBlock(text=MarkdownTextObject(text=text, verbatim=True)))
        room = VIEW_BLOCKS_MAX - len(blocks)
        blocks += [_hit_block(hit) for hit in state.results[:room]]
    return View(
        type="modal",
        callback_id=HOME_SEARCH_CALLBACK,
        private_metadata=search_metadata(state.location_id),
        title="Find a contact",
        submit="Search",
        close="Close",
        blocks=blocks,
    )


# ---------------------------------------------------------------- a thread opened from Home


def opened_root(
    *,
    contact: str,
    address: str | None,
    account: str | None,
    opened_by: str,
    thread_id: int,
) -> tuple[str, list[Block]]:
    """The root of a conversation's thread opened from the Home tab's search (no message
    yet): who it is with, who opened it, and Reply."""
    name = escape_clipped(contact or "Unknown contact", 150)
    header = f"*Conversation with {name}*"
    if address and address.strip() != contact.strip():
        header += f" ({escape_clipped(address, 320)})"
    opener = f"<@{opened_by}>" if re.fullmatch(r"[UW][A-Z0-9]{2,}", opened_by) else "someone"
    lines = [header, f"Opened from the Home tab by {opener}. Reply to write to them."]
    blocks: list[Block] = [
        SectionBlock(text=MarkdownTextObject(text="\n".join(lines), verbatim=True))
    ]
    account_text = account_line(account)
    if account_text:
        blocks.append(ContextBlock(elements=[MarkdownTextObject(text=account_text)]))
    reply = ButtonElement(text="Reply", action_id=REPLY_ACTION, value=str(thread_id))
    blocks.append(ActionsBlock(elements=[reply]))
    return f"Conversation with {clip(contact or 'Unknown contact', 150)}", blocks
