"""The last steps of a send before its outbox entry: the sender's signature (from their Slack
profile), merge fields filled with the contact's values, and the quiet-hours check.

A composer send arrives finished (its preview was shown and is what goes); a quick send is
finished here, with the same functions.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from slack_sdk.errors import SlackApiError

from bot.compose import CheckedDraft, ContactCard, Draft, contact_label
from bot.compose.assist import ComposeAssist
from bot.compose.finish import (
    ContactNeededError,
    QuietChoice,
    UnknownMergeFieldsError,
    changes_text,
    preview,
    quiet_choice,
)
from bot.compose.quiet_hours import QuietHours, zone_named
from bot.compose.signature import Signature, SignerProfile
from bot.highlevel import Contact, MessageChannel
from bot.posting.errors import SlackPostError
from bot.posting.poster import SlackPosters

log = logging.getLogger(__name__)

SIGNER_CACHE_SECONDS = 600.0


class QuietHoursError(Exception):
    """The send falls in the contact's quiet hours and nobody chose to send anyway."""

    def __init__(self, choice: QuietChoice) -> None:
        super().__init__(f"quiet hours until {choice.until_text}")
        self.choice = choice


@dataclass(frozen=True, slots=True)
class QuietPolicy:
    """QUIET_HOURS and its companions, from the settings."""

    hours: QuietHours
    email_too: bool
    default_tz: str


@dataclass(frozen=True, slots=True)
class Sender:
    """Who sends, as the signature and the `user.*` merge fields show them."""

    signature: str
    values: dict[str, str]

    @classmethod
    def unknown(cls) -> Sender:
        """Nobody known yet (Slack too slow): no signature or `user.*` values; the send
        signs itself when it is made."""
        return cls(signature="", values={})


class SendFinisher:
    """Signs, fills and checks a send against quiet hours."""

    def __init__(
        self,
        *,
        slack: SlackPosters,
        assist: ComposeAssist,
        signature: Signature | None,
        quiet: QuietPolicy | None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._slack = slack
        self._assist = assist
        self._signature = signature
        self._quiet = quiet
        self._clock = clock
        self._senders: dict[tuple[str, str], tuple[float, Sender]] = {}

    async def sender(self, team_id: str, user_id: str) -> Sender:
        """The person's signature and `user.*` values, from their Slack profile (kept briefly);
        without a profile, what can be said without it."""
        key = (team_id, user_id)
        cached = self._senders.get(key)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        profile = await self._profile(team_id, user_id)
        values = {
            "user.name": profile.real_name or profile.display_name,
            "user.first_name": profile.first_name,
            "user.last_name": profile.last_name,
            "user.email": profile.email,
        }
        signature = self._signature.render(profile) if self._signature is not None else ""
        sender = Sender(signature=signature, values=values)
        self._senders[key] = (time.monotonic() + SIGNER_CACHE_SECONDS, sender)
        return sender

    async def _profile(self, team_id: str, user_id: str) -> SignerProfile:
        try:
            client = (await self._slack.poster(team_id)).client
            user = (await client.users_info(user=user_id)).get("user") or {}
            team_name = ""
            if self._signature is not None and self._signature.needs_team:
                # auth.test names the workspace and needs no scope (team.info needs team:read).
                team_name = str((await client.auth_test()).get("team") or "")
        except (SlackApiError, SlackPostError) as exc:
            log.info("no Slack profile for the signature: %s", exc)
            return SignerProfile()
        profile = user.get("profile") or {}
        real_name = str(profile.get("real_name") or user.get("real_name") or "")
        display = str(profile.get("display_name") or user.get("name") or "")
        return SignerProfile(
            first_name=str(profile.get("first_name") or ""),
            last_name=str(profile.get("last_name") or ""),
            real_name=real_name,
            display_name=display,
            title=str(profile.get("title") or ""),
            team=team_name,
            email=str(profile.get("email") or ""),
        )

    async def quiet(
        self, draft: Draft | CheckedDraft, contact: ContactCard | None, location_id: str
    ) -> QuietChoice | None:
        """The quiet-hours choice to offer for a send now, None when it may go."""
        if self._quiet is None or draft.send_anyway or draft.schedule_at is not None:
            return None
        if draft.channel is MessageChannel.EMAIL and not self._quiet.email_too:
            return None
        contact_tz = contact.timezone if contact is not None else ""
        # The sub-account's zone only when the contact has none (a HighLevel request saved).
        location_tz = (
            "" if zone_named(contact_tz) else (await self._assist.place(location_id)).timezone
        )
        return quiet_choice(
            draft.channel,
            draft.schedule_at,
            quiet_hours=self._quiet.hours,
            email_too=self._quiet.email_too,
            now=self._clock(),
            contact_tz=contact_tz,
            location_tz=location_tz,
            default_tz=self._quiet.default_tz,
            who=_who(contact),
        )

    async def finish(
        self, checked: CheckedDraft, contact: Contact, team_id: str, user_id: str, location_id: str
    ) -> CheckedDraft:
        """`checked` signed and filled (unless the composer did it), or QuietHoursError, or
        UnknownMergeFieldsError / ContactNeededError (a sentence for the person)."""
        card = ContactCard.of(contact)
        choice = await self.quiet(checked, card, location_id)
        if choice is not None:
            raise QuietHoursError(choice)
        if checked.finished:
            return checked
        sender = await self.sender(team_id, user_id)
        draft = Draft(
            channel=checked.channel,
            message=checked.message,
            subject=checked.subject or "",
            html=checked.html or "",
        )
        if not changes_text(draft, sender.signature):
            return checked
        place = await self._assist.place(location_id)
        shown = preview(
            draft,
            contact=card,
            location_name=place.name,
            sender=sender.values,
            signature=sender.signature,
        )
        return replace(
            checked,
            message=shown.message,
            subject=shown.subject if checked.subject is not None else None,
            html=shown.html if checked.html is not None else None,
            finished=True,
        )


def _who(card: ContactCard | None) -> str:
    return contact_label(card.as_contact()) if card is not None else "the contact"


__all__ = [
    "ContactNeededError",
    "QuietHoursError",
    "QuietPolicy",
    "SendFinisher",
    "Sender",
    "UnknownMergeFieldsError",
]
