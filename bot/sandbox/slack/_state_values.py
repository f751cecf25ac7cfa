"""What a person entered, as Slack sends it: view.state.values and a click's actions[] entry."""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any

from bot.sandbox.slack._models import JsonDict

# Input elements and where Slack puts the user's answer in ``view.state.values``.
_SINGLE_VALUE_KEYS = {
    "plain_text_input": "value",
    "email_text_input": "value",
    "url_text_input": "value",
    "number_input": "value",
    "users_select": "selected_user",
    "conversations_select": "selected_conversation",
    "channels_select": "selected_channel",
    "datepicker": "selected_date",
    "timepicker": "selected_time",
    "datetimepicker": "selected_date_time",
}
_OPTION_KEYS = {
    "static_select": "selected_option",
    "radio_buttons": "selected_option",
    # Options loaded from the app (block_suggestion): the one the person chose, as the app
    # sent it, or null.
    "external_select": "selected_option",
}
_MULTI_OPTION_KEYS = {
    "multi_static_select": "selected_options",
    "multi_external_select": "selected_options",
    "checkboxes": "selected_options",
}
_MULTI_VALUE_KEYS = {
    "multi_users_select": "selected_users",
    "multi_conversations_select": "selected_conversations",
    "multi_channels_select": "selected_channels",
    # Without a workspace to read them from, a file_input's files are taken as given.
    "file_input": "files",
}


def _option(value: Any) -> JsonDict:
    if isinstance(value, Mapping):
        return dict(value)
    return {"text": {"type": "plain_text", "text": str(value), "emoji": True}, "value": str(value)}


def _state_entry(element_type: str, value: Any) -> JsonDict:
    """One ``state.values[block_id][action_id]`` entry for what a user entered."""
    if isinstance(value, Mapping) and "type" in value:
        return dict(value)  # the test spelled the entry out itself
    entry: JsonDict = {"type": element_type}
    if element_type in _OPTION_KEYS:
        entry[_OPTION_KEYS[element_type]] = None if value is None else _option(value)
    elif element_type in _MULTI_OPTION_KEYS:
        entry[_MULTI_OPTION_KEYS[element_type]] = [_option(v) for v in value or []]
    elif element_type in _MULTI_VALUE_KEYS:
        entry[_MULTI_VALUE_KEYS[element_type]] = list(value or [])
    else:
        entry[_SINGLE_VALUE_KEYS.get(element_type, "value")] = value
    return entry


def _is_empty(answer: Any) -> bool:
    if isinstance(answer, Mapping) and "type" in answer:
        return all(_is_empty(v) for k, v in answer.items() if k != "type")
    return answer is None or answer == "" or answer == []


def _interactive_elements(blocks: list[JsonDict]) -> dict[tuple[str, str], tuple[JsonDict, bool]]:
    """``(block_id, action_id) -> (element, required)`` for every element a user can fill."""
    found: dict[tuple[str, str], tuple[JsonDict, bool]] = {}
    for block in blocks:
        block_id = str(block.get("block_id"))
        element = block.get("element")
        if block.get("type") == "input" and isinstance(element, dict):
            required = not block.get("optional", False)
            found[(block_id, str(element.get("action_id")))] = (element, required)
        others = list(block.get("elements") or []) if block.get("type") == "actions" else []
        if isinstance(block.get("accessory"), dict):
            others.append(block["accessory"])
        for other in others:
            if isinstance(other, dict) and "action_id" in other:
                found[(block_id, str(other["action_id"]))] = (other, False)
    return found


def build_state_values(
    blocks: list[JsonDict],
    values: Mapping[str, Mapping[str, Any]] | None,
    *,
    submitting: bool = True,
) -> JsonDict:
    """``view.state.values`` as Slack sends it, from ``{block_id: {action_id: answer}}``.

    An answer is a plain value (text, a date, an option value, a list for multi-selects) shaped
    by the element type found in ``blocks``, or a full state entry dict with a ``type``.
    Every input block appears, unanswered ones empty. With ``blocks`` given, answering an
    element that is not there raises, and so does leaving a required input empty when
    ``submitting``: Slack would not let the user submit.
    """
    known = _interactive_elements(blocks)
    answers = {
        (block_id, action_id): answer
        for block_id, actions in (values or {}).items()
        for action_id, answer in actions.items()
    }
    state: dict[str, dict[str, Any]] = {}
    for (block_id, action_id), (element, required) in known.items():
        if (block_id, action_id) in answers:
            answer = answers.pop((block_id, action_id))  # "" or None: the person cleared it
        else:
            # Untouched: Slack submits what the input shows, its initial value.
            answer = _initial_answer(element)
        is_input = any(b.get("block_id") == block_id and b.get("type") == "input" for b in blocks)
        if _is_empty(answer):
            if required and submitting:
                raise ValueError(
                    f"required input {block_id}/{action_id} is empty; Slack would not let "
                    "the user submit this modal"
                )
            if not is_input:
                continue
        entry = _state_entry(str(element.get("type")), answer)
        state.setdefault(block_id, {})[action_id] = entry
    for (block_id, action_id), answer in answers.items():
        if blocks:
            raise ValueError(f"no element {block_id}/{action_id} in this view")
        element_type = "multi_static_select" if isinstance(answer, list) else "plain_text_input"
        state.setdefault(block_id, {})[action_id] = _state_entry(element_type, answer)
    return {"values": state}


def _initial_answer(element: JsonDict) -> Any:
    """The value an element shows before anyone touches it (None when it starts empty)."""
    if "initial_value" in element:
        return element["initial_value"]
    # Slack sends the initial option objects back as the app gave them (text included).
    if isinstance(element.get("initial_option"), Mapping):
        return copy.deepcopy(dict(element["initial_option"]))
    if isinstance(element.get("initial_options"), list):
        return [
            copy.deepcopy(dict(o)) for o in element["initial_options"] if isinstance(o, Mapping)
        ]
    for key in (
        "initial_date_time",
        "initial_date",
        "initial_time",
        "initial_user",
        "initial_channel",
        "initial_conversation",
    ):
        if key in element:
            return element[key]
    return None


def with_file_entries(
    blocks: list[JsonDict],
    values: Mapping[str, Mapping[str, Any]] | None,
    entry_for: Callable[[JsonDict, Any], JsonDict],
) -> dict[str, dict[str, Any]] | None:
    """``values`` with each ``file_input`` answer (file ids) turned into its state entry by
    ``entry_for(element, answer)`` (the workspace knows the files)."""
    if values is None:
        return None
    known = _interactive_elements(blocks)
    resolved: dict[str, dict[str, Any]] = {}
    for block_id, actions in values.items():
        resolved[block_id] = dict(actions)
        for action_id, answer in actions.items():
            element = known.get((block_id, action_id), ({}, False))[0]
            if element.get("type") == "file_input":
                resolved[block_id][action_id] = entry_for(element, answer)
    return resolved


def _merged_state(
    current: Any,
    blocks: list[JsonDict],
    values: Mapping[str, Mapping[str, Any]] | None,
    *,
    submitting: bool,
) -> JsonDict:
    """The view's state after the user entered ``values``; earlier answers are kept."""
    earlier = current.get("values", {}) if isinstance(current, Mapping) else {}
    # Slack forgets the state of blocks a views.update removed.
    present = {block.get("block_id") for block in blocks}
    merged: dict[str, dict[str, Any]] = {
        b: dict(actions) for b, actions in earlier.items() if b in present
    }
    for block_id, actions in (values or {}).items():
        merged.setdefault(block_id, {}).update(actions)
    return build_state_values(blocks, merged, submitting=submitting)


def _action(
    blocks: list[JsonDict],
    action_id: str,
    block_id: str | None,
    value: str | None,
    overrides: Mapping[str, Any] | None,
    action_ts: str,
) -> JsonDict:
    """The ``actions[0]`` entry for clicking ``action_id`` among ``blocks``."""
    for block in blocks:
        if block_id is not None and block.get("block_id") != block_id:
            continue
        candidates: list[Any] = []
        if block.get("type") == "actions":
            candidates = list(block.get("elements") or [])
        for key in ("accessory", "element"):
            if isinstance(block.get(key), dict):
                candidates.append(block[key])
        for element in candidates:
            if isinstance(element, dict) and element.get("action_id") == action_id:
                action: JsonDict = {
                    "type": element.get("type"),
                    "action_id": action_id,
                    "block_id": block.get("block_id"),
                    "action_ts": action_ts,
                }
                if "text" in element:
                    action["text"] = copy.deepcopy(element["text"])
                if value is not None or "value" in element:
                    action["value"] = value if value is not None else element["value"]
                action.update(overrides or {})
                return action
    if not blocks and block_id is not None:
        # A stand-in with no blocks to read from: trust the caller.
        action = {"type": "button", "action_id": action_id, "block_id": block_id}
        action.update({"action_ts": action_ts, "value": value} if value is not None else {})
        action.update(overrides or {})
        return action
    raise ValueError(f"no element with action_id {action_id!r} to click on")
