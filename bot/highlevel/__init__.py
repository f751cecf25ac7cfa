"""Typed async client of the HighLevel (LeadConnector) API.

Usage::

    async with HighLevelClient(token=SecretStr(token), location_id=location_id) as hl:
        sent = await hl.send_message(
            SendMessageRequest(type=MessageChannel.SMS, contact_id=contact.id, message="Hi")
        )

Errors: one tree rooted at ``HighLevelError`` — read its module docstring (``_errors``), above
all ``may_have_acted`` before retrying a failed send.
"""

from ._client import (
    DEFAULT_BASE_URL,
    DEFAULT_TIMEOUT,
    HighLevelClient,
    RequestObserver,
    StaticToken,
    TokenSource,
)
from ._conversation_models import (
    CancelScheduledResponse,
    Conversation,
    ConversationSearchResult,
    EmailMessage,
    Message,
    MessageMeta,
    MessageMetaEmail,
    MessagePage,
    UploadAttachmentsResponse,
)
from ._errors import (
    AccessLostError,
    AuthError,
    HighLevelError,
    InvalidGrantError,
    NotFoundError,
    RateLimitedError,
    ServerError,
    UnavailableError,
    ValidationError,
)
from ._inbox_calls import HighLevelUser
from ._models import (
    Appointment,
    Contact,
    ContactSearchResult,
    DndSetting,
    EmailReplyMode,
    ForwardConfig,
    Location,
    MessageChannel,
    MessageTemplate,
    OptimizationPeriod,
    SendMessageRequest,
    SendMessageResponse,
    TemplateKind,
    UpsertContactRequest,
    UpsertContactResponse,
)
from ._oauth import HighLevelOAuth, InstalledLocation, TokenGrant
from ._ratelimit import RateLimiter

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_TIMEOUT",
    "AccessLostError",
    "Appointment",
    "AuthError",
    "CancelScheduledResponse",
    "Contact",
    "ContactSearchResult",
    "Conversation",
    "ConversationSearchResult",
    "DndSetting",
    "EmailMessage",
    "EmailReplyMode",
    "ForwardConfig",
    "HighLevelClient",
    "HighLevelError",
    "HighLevelOAuth",
    "HighLevelUser",
    "InstalledLocation",
    "InvalidGrantError",
    "Location",
    "Message",
    "MessageChannel",
    "MessageMeta",
    "MessageMetaEmail",
    "MessagePage",
    "MessageTemplate",
    "NotFoundError",
    "OptimizationPeriod",
    "RateLimitedError",
    "RateLimiter",
    "RequestObserver",
    "SendMessageRequest",
    "SendMessageResponse",
    "ServerError",
    "StaticToken",
    "TemplateKind",
    "TokenGrant",
    "TokenSource",
    "UnavailableError",
    "UploadAttachmentsResponse",
    "UpsertContactRequest",
    "UpsertContactResponse",
    "ValidationError",
]
