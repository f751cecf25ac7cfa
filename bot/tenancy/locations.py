"""ServedLocations: the HighLevel locations whose events this bridge may store and show.

A Marketplace app delivers the webhooks of every location it is installed in to one URL, signed
with one key, so a good signature does not make an event ours: its ``locationId`` must be a
location this bridge serves. Today that is GHL_LOCATION_ID alone.

An event that names no location is not ours either. HighLevel's message events always name one
(``locationId`` is in the schema and in every example of docs/webhook-events/InboundMessage.md
and OutboundMessage.md); only agency-level events such as an agency-wide INSTALL carry just a
``companyId``, and the bridge acts on none of those. A message we cannot attribute to a served
location must not be shown in anyone's Slack.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any


class ServedLocations:
    """The set of location ids this bridge serves."""

    def __init__(self, location_ids: Iterable[str]) -> None:
        self._ids = frozenset(location_ids)
        if not self._ids or not all(self._ids):
            raise ValueError("a bridge serves at least one location, each with a non-empty id")

    def __contains__(self, location_id: object) -> bool:
        return isinstance(location_id, str) and location_id in self._ids

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._ids))

    def __len__(self) -> int:
        return len(self._ids)

    def __repr__(self) -> str:
        return f"ServedLocations({sorted(self._ids)!r})"

    def serves(self, event: Mapping[str, Any]) -> bool:
        """The event names a location (``locationId``) this bridge serves."""
        return event.get("locationId") in self
