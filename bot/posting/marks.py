"""What a post of ours shows, carried as its Slack message metadata, so that a post Slack made
but whose answer never reached us can be found again instead of being posted twice."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["POST_EVENT_TYPE", "FoundPost", "PostMark"]

POST_EVENT_TYPE = "ghl_bridge_post"


@dataclass(frozen=True, slots=True)
class PostMark:
    """What a post shows, sent as its Slack message metadata so it can be found again.

    `key` names the one thing the post shows (a HighLevel message, a send); `root_of` names the
    bridge thread whose root the post is, when it is one.
    """

    key: str
    root_of: str | None = None

    def metadata(self) -> dict[str, Any]:
        payload = {"key": self.key} | ({"root_of": self.root_of} if self.root_of else {})
        return {"event_type": POST_EVENT_TYPE, "event_payload": payload}


@dataclass(frozen=True, slots=True)
class FoundPost:
    """A post of ours found in Slack by its `PostMark`."""

    ts: str
    key: str
    root_of: str | None
