"""The Events API ``event_callback`` envelope, shared by the driver and ``uninstall()``.

Shape from docs.slack.dev (apis/events-api, "Callback field overview"): a workspace of an
Enterprise Grid organization adds ``enterprise_id`` and names the organization in
``context_enterprise_id`` and ``authorizations[0].enterprise_id``; a standalone one has nulls.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bot.sandbox.slack._models import JsonDict
from bot.sandbox.slack._workspace import SlackWorkspace


def event_envelope(
    workspace: SlackWorkspace,
    event: Mapping[str, Any],
    *,
    token: str,
    team_id: str,
    api_app_id: str,
    event_id: str,
    event_time: int,
) -> JsonDict:
    """Slack's ``event_callback`` envelope for ``event`` in ``workspace`` (as ``team_id``)."""
    enterprise_id = workspace.enterprise.id if workspace.enterprise is not None else None
    envelope: JsonDict = {
        "token": token,
        "team_id": team_id,
        "context_team_id": team_id,
        "context_enterprise_id": enterprise_id,
        "api_app_id": api_app_id,
        "event": dict(event),
        "type": "event_callback",
        "event_id": event_id,
        "event_time": event_time,
        "authorizations": [
            {
                "enterprise_id": enterprise_id,
                "team_id": team_id,
                "user_id": workspace.bot_user_id,
                "is_bot": True,
                "is_enterprise_install": False,
            }
        ],
        "is_ext_shared_channel": False,
    }
    if enterprise_id is not None:
        envelope["enterprise_id"] = enterprise_id
    return envelope
