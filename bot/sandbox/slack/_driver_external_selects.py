"""Select menus of external data source: loading their options (block_suggestion) and
choosing one, as Slack does it.

docs.slack.dev (reference/block-kit/block-elements/select-menu-element#external_select,
reference/interaction-payloads/block_suggestion-payload): when a person types into the menu,
Slack POSTs a signed ``block_suggestion`` payload to the app's Options Load URL (the Request
URL when none is set) and waits three seconds for ``{"options": [...]}`` or
``{"option_groups": [...]}``; a late or malformed answer leaves the menu empty.
"""

from __future__ import annotations

import asyncio
import copy
import time
from collections.abc import Mapping, Sequence
from typing import Any

from bot.sandbox.slack._driver_base import ACK_DEADLINE_SECONDS, DriverResult
from bot.sandbox.slack._driver_interactivity import Interactivity
from bot.sandbox.slack._models import JsonDict
from bot.sandbox.slack._state_values import _merged_state
from bot.sandbox.slack._validation import (
    EXTERNAL_SELECT_TYPES,
    option_problems,
    suggestion_answer_problems,
)

# docs.slack.dev, external_select: "The default value is 3" characters typed before Slack asks.
DEFAULT_MIN_QUERY_LENGTH = 3


class OptionsLoadError(ValueError):
    """Slack could not load the app's options: the menu shows none.

    ``reason`` is ``"timeout"`` (no answer within the deadline), ``"http_error"`` (not a 200)
    or ``"malformed"`` (not a valid options answer; ``problems`` says why). ``result`` is what
    the app answered (None after a timeout).
    """

    def __init__(
        self,
        reason: str,
        message: str,
        *,
        result: DriverResult | None = None,
        problems: Sequence[str] = (),
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.result = result
        self.problems = list(problems)

    @property
    def timed_out(self) -> bool:
        return self.reason == "timeout"


class SuggestedOptions(list[JsonDict]):
    """The options the app offered (those of every group, in order, for ``option_groups``)."""

    def __init__(
        self,
        options: list[JsonDict],
        *,
        result: DriverResult,
        option_groups: list[JsonDict] | None = None,
    ) -> None:
        super().__init__(options)
        self.result = result
        self.option_groups = option_groups


def _external_element(
    blocks: list[JsonDict], action_id: str, block_id: str | None
) -> tuple[JsonDict, JsonDict]:
    """``(block, element)`` of the external select ``action_id`` among ``blocks``."""
    for block in blocks:
        if block_id is not None and block.get("block_id") != block_id:
            continue
        candidates = list(block.get("elements") or []) if block.get("type") == "actions" else []
        for key in ("accessory", "element"):
            if isinstance(block.get(key), dict):
                candidates.append(block[key])
        for element in candidates:
            if isinstance(element, dict) and element.get("action_id") == action_id:
                if element.get("type") not in EXTERNAL_SELECT_TYPES:
                    raise ValueError(
                        f"{action_id!r} is a {element.get('type')}, not an external select"
                    )
                return block, element
    raise ValueError(f"no element with action_id {action_id!r} in this view")


def _dispatches(block: JsonDict) -> bool:
    """Whether choosing in this block sends block_actions (an input block only with
    ``dispatch_action``; docs.slack.dev, input block)."""
    return block.get("type") != "input" or bool(block.get("dispatch_action"))


class ExternalSelects(Interactivity):
    """A person opens an external select, types, and chooses among the app's options."""

    async def block_suggestion(
        self,
        view_id: str,
        action_id: str,
        value: str = "",
        *,
        user_id: str,
        block_id: str | None = None,
        deadline_seconds: float = ACK_DEADLINE_SECONDS,
        timestamp: int | None = None,
        signature: str | None = None,
    ) -> SuggestedOptions:
        """A user types ``value`` into the external select ``action_id`` of an open modal.

        POSTs the signed ``block_suggestion`` payload to ``options_url`` and returns the
        options the app answered. Raises ``OptionsLoadError`` when Slack would show none: no
        answer within ``deadline_seconds`` (Slack's 3 s; the request is abandoned then), not
        HTTP 200, or not a valid answer. Raises ``ValueError`` when ``value`` is shorter than
        the element's ``min_query_length`` (default 3): Slack would not ask yet.
        """
        sim_view = self._sim_view(view_id)
        block, element = _external_element(sim_view.blocks, action_id, block_id)
        needed = element.get("min_query_length", DEFAULT_MIN_QUERY_LENGTH)
        if len(value) < needed:
            raise ValueError(
                f"{value!r} is shorter than min_query_length {needed}; Slack sends no "
                "block_suggestion yet"
            )
        view = copy.deepcopy(sim_view.view)
        view["state"] = _merged_state(view.get("state"), sim_view.blocks, None, submitting=False)
        payload: JsonDict = {
            "type": "block_suggestion",
            "user": self._user(user_id),
            "container": {"type": "view", "view_id": view_id},
            "api_app_id": self.api_app_id,
            "token": self._verification_token,
            "action_id": action_id,
            "block_id": block.get("block_id"),
            "value": value,
            "team": self._team(),
            "enterprise": self._enterprise(),
            "is_enterprise_install": False,
            "view": view,
        }
        started = time.monotonic()
        try:
            async with asyncio.timeout(deadline_seconds):
                result = await self._post_payload(
                    payload, timestamp=timestamp, signature=signature, url=self.options_url
                )
        except TimeoutError:
            raise OptionsLoadError(
                "timeout",
                f"timed out: no answer to block_suggestion {action_id!r} within "
                f"{deadline_seconds:g} s; Slack shows no options",
            ) from None
        if time.monotonic() - started > deadline_seconds:
            raise OptionsLoadError(
                "timeout",
                f"timed out: the answer to block_suggestion {action_id!r} took "
                f"{result.elapsed_seconds:.2f} s (over {deadline_seconds:g} s)",
                result=result,
            )
        if result.status != 200:
            raise OptionsLoadError(
                "http_error",
                f"the app answered block_suggestion {action_id!r} with HTTP {result.status}",
                result=result,
            )
        problems = suggestion_answer_problems(result.json)
        if problems:
            raise OptionsLoadError(
                "malformed",
                f"the app's options for {action_id!r} are malformed: " + "; ".join(problems),
                result=result,
                problems=problems,
            )
        answer: JsonDict = result.json
        if "options" in answer:
            return SuggestedOptions(copy.deepcopy(answer["options"]), result=result)
        groups = copy.deepcopy(answer["option_groups"])
        flat = [option for group in groups for option in group["options"]]
        return SuggestedOptions(flat, result=result, option_groups=groups)

    async def choose_external(
        self,
        view_id: str,
        action_id: str,
        option: Mapping[str, Any] | Sequence[Mapping[str, Any]],
        *,
        user_id: str,
        block_id: str | None = None,
        timestamp: int | None = None,
        signature: str | None = None,
    ) -> DriverResult | None:
        """A user chooses ``option`` (e.g. one ``block_suggestion`` returned) in the external
        select ``action_id`` of an open modal; for a ``multi_external_select``, a list of
        options, the whole selection.

        The view's state then carries it (``selected_option``/``selected_options``) for the
        next payload and the submission. In an actions block, as a section accessory or in an
        input block with ``dispatch_action``, Slack also sends ``block_actions``: its result is
        returned; otherwise None (Slack sends nothing).
        """
        sim_view = self._sim_view(view_id)
        block, element = _external_element(sim_view.blocks, action_id, block_id)
        multi = element.get("type") == "multi_external_select"
        chosen = [option] if isinstance(option, Mapping) else list(option)
        if not multi and len(chosen) != 1:
            raise ValueError(f"{action_id!r} is an external_select: choose one option")
        for index, one in enumerate(chosen):
            problems = option_problems(one, f"/option/{index}")
            if problems:
                raise ValueError(f"not an option Slack could show: {'; '.join(problems)}")
        selected: JsonDict = (
            {"selected_options": [dict(one) for one in chosen]}
            if multi
            else {"selected_option": dict(chosen[0])}
        )
        entry = {"type": element["type"], **copy.deepcopy(selected)}
        values = {str(block.get("block_id")): {action_id: entry}}
        if _dispatches(block):
            return await self.block_action(
                action_id,
                user_id=user_id,
                view_id=view_id,
                block_id=str(block.get("block_id")),
                values=values,
                action=selected,
                timestamp=timestamp,
                signature=signature,
            )
        sim_view.view["state"] = _merged_state(
            sim_view.view.get("state"), sim_view.blocks, values, submitting=False
        )
        return None
