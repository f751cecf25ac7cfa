"""The App Home: conversations waiting for a reply, and a contact search that opens threads."""

from bot.home.publisher import HomePublisher, RateLimited
from bot.home.service import HomeTab

__all__ = ["HomePublisher", "HomeTab", "RateLimited"]
