"""Which channels can work for a contact: what they can receive (a phone number, an email
address, no Do Not Disturb) and where a conversation exists. HighLevel can only answer a
contact on Facebook, Instagram, Live chat or a custom provider once they have written there,
and WhatsApp and RCS only where the sub-account has them."""

from __future__ import annotations

from dataclasses import dataclass

from bot.compose.draft import unreachable_reason
from bot.compose.labels import COMPOSER_CHANNELS
from bot.highlevel import Contact, Message, MessageChannel

# HighLevel's message types (`messageType`) and the send channel that answers each.
MESSAGE_TYPE_CHANNELS: dict[str, MessageChannel] = {
    "TYPE_SMS": MessageChannel.SMS,
    "TYPE_EMAIL": MessageChannel.EMAIL,
    "TYPE_WHATSAPP": MessageChannel.WHATSAPP,
    "TYPE_FACEBOOK": MessageChannel.FB,
    "TYPE_INSTAGRAM": MessageChannel.IG,
    "TYPE_LIVE_CHAT": MessageChannel.LIVE_CHAT,
    "TYPE_CUSTOM_SMS": MessageChannel.CUSTOM,
    "TYPE_CUSTOM_EMAIL": MessageChannel.CUSTOM,
    "TYPE_CUSTOM_PROVIDER_SMS": MessageChannel.CUSTOM,
    "TYPE_CUSTOM_PROVIDER_EMAIL": MessageChannel.CUSTOM,
    "TYPE_RCS": MessageChannel.RCS,
    "TYPE_GMB": MessageChannel.GMB,
}
# Channels that need a conversation on them first.
CONVERSATION_CHANNELS = frozenset(
    {MessageChannel.FB, MessageChannel.IG, MessageChannel.LIVE_CHAT, MessageChannel.CUSTOM}
)
# Channels the sub-account may or may not have.
SUB_ACCOUNT_CHANNELS = frozenset({MessageChannel.WHATSAPP, MessageChannel.RCS})
OFFERED_ORDER: tuple[MessageChannel, ...] = (*COMPOSER_CHANNELS, MessageChannel.RCS)


@dataclass(frozen=True, slots=True)
class ChannelHistory:
    """The channels a contact's conversation has used, newest first."""

    used: frozenset[MessageChannel] = frozenset()
    # The channel of the customer's last message, to answer on by default.
    last_inbound: MessageChannel | None = None
    # The custom provider of the conversation's custom-channel messages.
    custom_provider_id: str = ""

    @classmethod
    def of(cls, messages: list[Message]) -> ChannelHistory:
        """From a conversation's messages, newest first."""
        used: set[MessageChannel] = set()
        last_inbound: MessageChannel | None = None
        provider = ""
        for message in messages:
            channel = MESSAGE_TYPE_CHANNELS.get(message.message_type or "")
            if channel is None:
                continue
            used.add(channel)
            if last_inbound is None and message.direction == "inbound":
                last_inbound = channel
            if channel is MessageChannel.CUSTOM and not provider:
                provider = message.conversation_provider_id or ""
        return cls(frozenset(used), last_inbound, provider)


def offered_channels(
    contact: Contact,
    history: ChannelHistory | None,
    sub_account: frozenset[MessageChannel] | None,
) -> tuple[MessageChannel, ...]:
    """The channels to offer for `contact`, in the composer's order.

    Without a history (HighLevel did not say in time) the conversation channels are offered
    as before, so nothing the person needs is hidden by a slow answer.
    """
    offered: list[MessageChannel] = []
    for channel in OFFERED_ORDER:
        if unreachable_reason(contact, channel) is not None:
            continue
        used = history is not None and channel in history.used
        if channel in CONVERSATION_CHANNELS and history is not None and not used:
            continue
        if channel in SUB_ACCOUNT_CHANNELS and not used:
            # Not known: WhatsApp stays offered as before; RCS is rarer, so it waits to be seen.
            has = sub_account if sub_account is not None else frozenset({MessageChannel.WHATSAPP})
            if channel not in has:
                continue
        offered.append(channel)
    return tuple(offered)
