"""Which HighLevel locations (sub-accounts) this bridge serves, and keeping their data apart."""

from bot.tenancy.locations import ServedLocations

__all__ = ["ServedLocations"]
