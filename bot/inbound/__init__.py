"""Inbound: HighLevel messages (webhooks or polling) into the right Slack thread, exactly once.

HighLevel retries a webhook only on 429 (NOTES.md §4), so an event is stored before we answer
2xx and shown in Slack afterwards, off the request path. Every message is keyed by its id
(for email: its emailMessageId, since an email thread is one HighLevel message), so a webhook
delivered twice, or seen again by polling, is shown once; our own sends coming back as
OutboundMessage only update the status of the post that already shows them.

- `messages`: IncomingMessage, read from a webhook body or a polled message.
- `service`: InboundService stores each event once.
- `worker`: InboundWorker shows stored events in Slack, in order per conversation.
- `polling`: InboundPoller finds messages webhooks did not bring.

A customer's attachments are copied into the thread right after the message's post
(`bot.files.inbound.InboundFiles`, handed to the worker), and WhatsApp media that arrive late
are looked for in the next minute.
"""

from bot.inbound.messages import IncomingMessage, from_polled, from_webhook
from bot.inbound.polling import InboundPoller
from bot.inbound.service import InboundService
from bot.inbound.worker import InboundWorker

__all__ = [
    "InboundPoller",
    "InboundService",
    "InboundWorker",
    "IncomingMessage",
    "from_polled",
    "from_webhook",
]
