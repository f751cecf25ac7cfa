"""A spec-faithful HighLevel (LeadConnector) simulator: for tests, `ghl-bridge demo` and dry runs.

Start one with ``async with HighLevelSimulator() as sim:`` (or ``await sim.start()``); point the
bridge at ``sim.base_url`` with ``sim.token``, ``sim.location_id`` and ``sim.public_key_pem``.
README.md beside this file lists its behaviour and the choices made where HighLevel is vague.
"""

from ._compose import SimAppointment, SimTemplate
from ._faults import Faults
from ._files import UPLOAD_EXTENSIONS, FileFaults
from ._inbox_state import UNREAD_EVENT, SimUser
from ._locations import COMPANY_ID, SimLocation
from ._models import (
    ADA_LOVELACE_ID,
    ALAN_TURING_ID,
    GRACE_HOPPER_ID,
    KATHERINE_JOHNSON_ID,
    SimContact,
    SimConversation,
    SimEmail,
    SimMessage,
)
from ._oauth import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, OAuthCounters, SimToken
from ._records import AttachmentSend, SignedUpload, Upload
from ._routes import ACCEPTED_VERSIONS
from ._simulator import (
    DEFAULT_LOCATION_ID,
    DEFAULT_TOKEN,
    AmbiguousCustomer,
    CustomerReply,
    HighLevelSimulator,
    RequestRecord,
)
from ._webhooks import WebhookDelivery

__all__ = [
    "ACCEPTED_VERSIONS",
    "ADA_LOVELACE_ID",
    "ALAN_TURING_ID",
    "COMPANY_ID",
    "DEFAULT_CLIENT_ID",
    "DEFAULT_CLIENT_SECRET",
    "DEFAULT_LOCATION_ID",
    "DEFAULT_TOKEN",
    "GRACE_HOPPER_ID",
    "KATHERINE_JOHNSON_ID",
    "UNREAD_EVENT",
    "UPLOAD_EXTENSIONS",
    "AmbiguousCustomer",
    "AttachmentSend",
    "CustomerReply",
    "Faults",
    "FileFaults",
    "HighLevelSimulator",
    "OAuthCounters",
    "RequestRecord",
    "SignedUpload",
    "SimAppointment",
    "SimContact",
    "SimConversation",
    "SimEmail",
    "SimLocation",
    "SimMessage",
    "SimTemplate",
    "SimToken",
    "SimUser",
    "Upload",
    "WebhookDelivery",
]
