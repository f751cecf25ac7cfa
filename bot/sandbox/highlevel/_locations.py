"""The agency and its sub-accounts (locations): ids, names, seeded contacts, installs.

``LocationsMixin`` is the part of ``HighLevelSimulator``'s Python API about locations and the
Marketplace app's installs; the OAuth tokens themselves are in ``_oauth``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ._faults import SlidingWindowLimiter
from ._models import SimContact, seed_contacts
from ._oauth import SANDBOX_USER_ID, OAuthServer, SimToken

if TYPE_CHECKING:
    from ._webhooks import WebhookDelivery, WebhookSender

__all__ = [
    "COMPANY_ID",
    "COMPANY_NAME",
    "DEFAULT_TIMEZONE",
    "LocationsMixin",
    "SimLocation",
    "location_id_for",
    "seed_location_contacts",
]

COMPANY_ID = "sbxCompany0000000001"
COMPANY_NAME = "Sandbox Agency"
DEFAULT_TIMEZONE = "America/Los_Angeles"
_NAMES = (
    "Sandbox Dental",
    "Sandbox Plumbing",
    "Sandbox Realty",
    "Sandbox Bakery",
    "Sandbox Fitness",
    "Sandbox Law",
)
# Four people per extra location, shaped like location 1's: phone+email, email only,
# phone with SMS DND, phone on WhatsApp. Names differ so tests can tell locations apart.
_PEOPLE = (
    (("Marie", "Curie"), ("Rosalind", "Franklin"), ("Nikola", "Tesla"), ("Hedy", "Lamarr")),
    (("Emmy", "Noether"), ("Lise", "Meitner"), ("Carl", "Gauss"), ("Srinivasa", "Ramanujan")),
    (("Ida", "Wells"), ("Mary", "Somerville"), ("Leonhard", "Euler"), ("Chien", "Wu")),
    (("Sophie", "Germain"), ("Barbara", "McClintock"), ("Niels", "Bohr"), ("Dorothy", "Hodgkin")),
    (("Henrietta", "Leavitt"), ("Caroline", "Herschel"), ("Max", "Planck"), ("Mae", "Jemison")),
)


def location_id_for(index: int) -> str:
    """``sbxLocation000000001``, ``…002``: 20 characters like HighLevel's ids."""
    return f"sbxLocation{index:09d}"


def _pit_for_index(index: int) -> str:
    return f"sandbox-token-{index:016d}"


def _name_for(index: int) -> str:
    return _NAMES[index - 1] if index <= len(_NAMES) else f"Sandbox Location {index}"


@dataclass
class SimLocation:
    """One sub-account of the sandbox agency."""

    id: str
    name: str
    index: int  # 1-based creation order
    address: str
    installed: bool = False  # the Marketplace app is installed here
    timezone: str = DEFAULT_TIMEZONE  # IANA name (``set_timezone``)

    def to_installed_api(self) -> dict[str, Any]:
        """``InstalledLocationSchema`` of oauth.json."""
        return {
            "_id": self.id,
            "name": self.name,
            "address": self.address,
            "isInstalled": self.installed,
        }

    def to_api(self, company_id: str) -> dict[str, Any]:
        """``GetLocationByIdSchema`` of locations.json (GET /locations/{locationId})."""
        street, city, region, country = (part.strip() for part in self.address.split(","))
        state, postal_code = region.split()
        place = {
            "address": street,
            "city": city,
            "state": state,
            "country": "US" if country == "USA" else country,
            "postalCode": postal_code,
            "timezone": self.timezone,
        }
        return {
            "id": self.id,
            "companyId": company_id,
            "name": self.name,
            **place,
            "business": {"name": self.name, **place},
            "social": {},
            "settings": {
                "allowDuplicateContact": False,
                "allowDuplicateOpportunity": False,
                "allowFacebookNameMerge": False,
                "disableContactTimezone": False,
            },
        }


def seed_location_contacts(index: int, location_id: str) -> list[SimContact]:
    """Location 1: the four historic contacts; others: four of their own, fixed ids."""
    if index == 1:
        contacts = seed_contacts()
    else:
        people: list[tuple[str, str]] = list(_PEOPLE[(index - 2) % len(_PEOPLE)])
        if index - 2 >= len(_PEOPLE):  # beyond the named ones: same people, numbered names
            people = [(first, f"{last}{index}") for first, last in people]
        domain = f"location{index}.example.com"
        contacts = []
        for k, (first, last) in enumerate(people, start=1):
            phone = f"+1415555{index % 100:02d}{k:02d}" if k != 2 else None
            email = f"{first.lower()}@{domain}" if k != 3 else None
            contacts.append(
                SimContact(
                    id=f"sbxL{index % 1000:03d}Contact{k:06d}",
                    first_name=first,
                    last_name=last,
                    phone=phone,
                    email=email,
                    whatsapp=k == 4,
                    dnd_settings={"SMS": {"status": "active", "message": "Opted out by STOP"}}
                    if k == 3
                    else {},
                )
            )
    for contact in contacts:
        contact.location_id = location_id
    return contacts


class LocationsMixin:
    """Locations, their tokens and the app's installs (part of ``HighLevelSimulator``)."""

    location_id: str
    token: str
    locations: dict[str, SimLocation]
    contacts: dict[str, SimContact]
    oauth: OAuthServer
    webhooks: WebhookSender
    limiter: SlidingWindowLimiter
    _limiters: dict[str, SlidingWindowLimiter]
    _pits: dict[str, str]  # location id -> PIT, for locations after the first
    _pit_tokens: dict[str, SimToken]

    def _init_locations(self, count: int, with_seed_contacts: bool) -> None:
        if count < 1:
            raise ValueError("locations must be at least 1")
        self.locations = {}
        self._pits = {}
        self._limiters = {}
        self._pit_tokens = {}
        for _ in range(count):
            self.add_location(with_seed_contacts=with_seed_contacts)

    @property
    def company_id(self) -> str:
        """The agency (company) that owns every location."""
        return self.oauth.company_id

    @property
    def location_ids(self) -> list[str]:
        """Every location's id, first (``location_id``) first."""
        return list(self.locations)

    def location_name(self, location_id: str) -> str:
        return self._location(location_id).name

    def pit_for(self, location_id: str) -> str:
        """The location's static Private Integration Token (location 1's is ``token``)."""
        self._location(location_id)
        return self.token if location_id == self.location_id else self._pits[location_id]

    def find_location(self, ref: str) -> str:
        """The location ``ref`` names: its id, its number (1, 2, …) or (part of) its name."""
        wanted = ref.strip()
        if wanted in self.locations:
            return wanted
        by_index = {str(loc.index): loc.id for loc in self.locations.values()}
        if wanted in by_index:
            return by_index[wanted]
        lowered = wanted.lower()
        matches = [
            loc.id for loc in self.locations.values() if lowered and lowered in loc.name.lower()
        ]
        if len(matches) == 1:
            return matches[0]
        names = ", ".join(f"{loc.index}. {loc.name}" for loc in self.locations.values())
        raise LookupError(
            f"No single location {wanted!r}: use an id, a number or a name ({names})."
        )

    def contacts_of(self, location_id: str) -> list[SimContact]:
        return [c for c in self.contacts.values() if c.location_id == location_id]

    def add_location(
        self,
        name: str | None = None,
        *,
        with_seed_contacts: bool = True,
        timezone: str | None = None,
    ) -> str:
        """A new location of the agency (the app not installed there); returns its id."""
        index = len(self.locations) + 1
        location_id = self.location_id if index == 1 else location_id_for(index)
        if location_id in self.locations:
            raise ValueError(f"location {location_id!r} exists already")
        self.locations[location_id] = SimLocation(
            id=location_id,
            name=name or _name_for(index),
            index=index,
            address=f"{index} Sandbox Street, San Francisco, CA 94105, USA",
        )
        if timezone is not None:
            self.set_timezone(location_id, timezone)
        if index > 1:
            self._pits[location_id] = _pit_for_index(index)
        if with_seed_contacts:
            for contact in seed_location_contacts(index, location_id):
                self.contacts[contact.id] = contact
        return location_id

    def set_timezone(self, location_id: str, timezone: str) -> None:
        """The location's time zone (an IANA name; ``ValueError`` for an unknown one)."""
        try:
            ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {timezone!r}") from exc
        self._location(location_id).timezone = timezone

    def _location(self, location_id: str) -> SimLocation:
        location = self.locations.get(location_id)
        if location is None:
            raise KeyError(f"no location {location_id!r} in the sandbox")
        return location

    def location_of_pit(self, value: str) -> str | None:
        if value == self.token:
            return self.location_id
        return next((loc for loc, pit in self._pits.items() if pit == value), None)

    def authenticate(self, header: str | None) -> SimToken:
        """The token of ``Authorization: Bearer …`` (a PIT or an OAuth token), else ApiError 401."""
        value = header[7:] if header and header.startswith("Bearer ") else ""
        location_id = self.location_of_pit(value) if value else None
        if location_id is None:
            return self.oauth.authenticate(header)
        token = self._pit_tokens.get(value)
        if token is None or token.location_id != location_id:
            token = SimToken(value, "pit", "Location", self.company_id, location_id)
            self._pit_tokens[value] = token
        token.requests += 1
        return token

    def token_info(self, value: str) -> SimToken | None:
        """What the sandbox knows of a token (kind, location, expiry, revoked, requests)."""
        return self._pit_tokens.get(value) or self.oauth.tokens.get(value)

    def limiter_for(self, resource_id: str) -> SlidingWindowLimiter:
        """HighLevel limits per app per resource: each location (and the company) alone."""
        if resource_id == self.location_id:
            return self.limiter
        limiter = self._limiters.get(resource_id)
        if limiter is None:
            base = self.limiter
            limiter = SlidingWindowLimiter(base.max_requests, base.interval_ms, base.daily)
            self._limiters[resource_id] = limiter
        return limiter

    # ------------------------------------------------------------------ installs

    @property
    def installed_location_ids(self) -> list[str]:
        return [loc.id for loc in self.locations.values() if loc.installed]

    def mark_installed(self, location_ids: list[str]) -> None:
        for location_id in location_ids:
            self._location(location_id).installed = True

    async def install(self, location_id: str) -> WebhookDelivery:
        """The app is installed on ``location_id``: a signed location-level INSTALL webhook."""
        self.mark_installed([location_id])
        return self.webhooks.emit(self.install_payload(location_id))

    async def uninstall(self, location_id: str | None = None) -> WebhookDelivery:
        """Uninstall from ``location_id`` (None: the agency-level install, every location).

        Revokes the OAuth access and refresh tokens bound to it (401 ``Invalid JWT`` /
        ``invalid_grant`` afterwards; PITs stay valid) and sends a signed UNINSTALL webhook.
        """
        payload: dict[str, Any] = {"type": "UNINSTALL", "appId": self.oauth.app_id}
        if location_id is None:
            for location in self.locations.values():
                location.installed = False
                self.oauth.revoke(location_id=location.id)
            self.oauth.revoke(company=True)
            payload["companyId"] = self.company_id
        else:
            self._location(location_id).installed = False
            self.oauth.revoke(location_id=location_id)
            payload["locationId"] = location_id  # AppUninstall.md's location-level example
        return self.webhooks.emit(payload)

    def install_payload(self, location_id: str | None) -> dict[str, Any]:
        """AppInstall.md: location-level (non-whitelabel) or agency-level example fields."""
        payload: dict[str, Any] = {"type": "INSTALL", "appId": self.oauth.app_id}
        if location_id is not None:
            payload |= {
                "locationId": location_id,
                "companyId": self.company_id,
                "userId": SANDBOX_USER_ID,
                "isWhitelabelCompany": False,
                "whitelabelDetails": {},
                "companyName": COMPANY_NAME,
            }
        else:
            payload["companyId"] = self.company_id
        return payload
