"""The channels the composer offers and how it names them."""

from __future__ import annotations

from bot.highlevel import MessageChannel

__all__ = ["CHANNEL_LABELS", "COMPOSER_CHANNELS", "DND_KEYS", "PHONE_CHANNELS"]

# The channels the composer offers, in the order shown.
COMPOSER_CHANNELS: tuple[MessageChannel, ...] = (
    MessageChannel.SMS,
    MessageChannel.EMAIL,
    MessageChannel.WHATSAPP,
    MessageChannel.FB,
    MessageChannel.IG,
    MessageChannel.LIVE_CHAT,
    MessageChannel.CUSTOM,
)
CHANNEL_LABELS: dict[MessageChannel, str] = {
    MessageChannel.SMS: "SMS",
    MessageChannel.EMAIL: "Email",
    MessageChannel.WHATSAPP: "WhatsApp",
    MessageChannel.FB: "Facebook",
    MessageChannel.IG: "Instagram",
    MessageChannel.LIVE_CHAT: "Live chat",
    MessageChannel.CUSTOM: "Custom provider",
    MessageChannel.RCS: "RCS",
    MessageChannel.GMB: "Google Business",
    MessageChannel.TIKTOK: "TikTok",
}
# Channels delivered to a phone number; Email needs an email address.
PHONE_CHANNELS = frozenset({MessageChannel.SMS, MessageChannel.WHATSAPP, MessageChannel.RCS})
# Keys of a contact's dndSettings for each channel HighLevel lets a contact opt out of.
DND_KEYS: dict[MessageChannel, str] = {
    MessageChannel.SMS: "SMS",
    MessageChannel.EMAIL: "Email",
    MessageChannel.WHATSAPP: "WhatsApp",
    MessageChannel.FB: "FB",
    MessageChannel.GMB: "GMB",
}
