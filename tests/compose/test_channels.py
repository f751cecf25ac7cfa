"""Which channels the composer offers a contact: what they can receive, where they have a
conversation, what the sub-account has."""

from __future__ import annotations

from bot.compose.channels import ChannelHistory, offered_channels
from bot.highlevel import Contact, Message, MessageChannel

ADA = Contact(id="c1", phone="+14155550100", email="ada@example.com")
SMS, EMAIL, WA = MessageChannel.SMS, MessageChannel.EMAIL, MessageChannel.WHATSAPP
IG, RCS, CUSTOM = MessageChannel.IG, MessageChannel.RCS, MessageChannel.CUSTOM


def _message(message_type: str, direction: str, provider: str | None = None) -> Message:
    return Message(
        id=f"m-{message_type}-{direction}",
        message_type=message_type,
        direction=direction,
        conversation_provider_id=provider,
    )


def test_history_knows_the_channels_used_the_last_inbound_and_the_custom_provider() -> None:
    history = ChannelHistory.of(
        [
            _message("TYPE_SMS", "outbound"),
            _message("TYPE_INSTAGRAM", "inbound"),
            _message("TYPE_CUSTOM_PROVIDER_SMS", "inbound", provider="prov-1"),
            _message("TYPE_ACTIVITY", "outbound"),
        ]
    )
    assert history.used == {SMS, IG, CUSTOM}
    assert history.last_inbound is IG
    assert history.custom_provider_id == "prov-1"


def test_conversation_channels_need_a_conversation_on_them() -> None:
    offered = offered_channels(ADA, ChannelHistory(frozenset({SMS})), frozenset())
    assert offered == (SMS, EMAIL)
    with_ig = offered_channels(ADA, ChannelHistory(frozenset({IG})), frozenset())
    assert IG in with_ig and MessageChannel.FB not in with_ig


def test_whatsapp_and_rcs_need_the_sub_account_to_have_them() -> None:
    assert offered_channels(ADA, ChannelHistory(), frozenset({WA, RCS})) == (SMS, EMAIL, WA, RCS)
    assert WA not in offered_channels(ADA, ChannelHistory(), frozenset())


def test_without_answers_from_highlevel_nothing_needed_is_hidden_except_rcs() -> None:
    offered = offered_channels(ADA, None, None)
    assert {SMS, EMAIL, WA, IG, CUSTOM} <= set(offered)
    assert RCS not in offered


def test_what_the_contact_cannot_receive_is_never_offered() -> None:
    email_only = Contact(id="c2", email="grace@example.com")
    assert offered_channels(email_only, ChannelHistory(), frozenset({WA})) == (EMAIL,)
