"""Block Kit and modal checks, the way Slack's Web API applies them.

Two layers run on every payload: slack_sdk's own models (``Block.parse`` / ``View`` and their
``to_dict()``, which runs every nested validator), and Slack's documented limits written out
explicitly, so a limit the SDK does not know about still fails here as it would on Slack.
Problems are reported in Slack's own wording: ``[ERROR] <what> [json-pointer:<where>]``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from slack_sdk.errors import SlackObjectFormationError
from slack_sdk.models.blocks import Block
from slack_sdk.models.views import View

from bot.sandbox.slack._files import FILE_INPUT_MAX_FILES

# Documented limits (docs.slack.dev: reference/block-kit/blocks, reference/views/modal-views,
# reference/methods/chat.postMessage).
MESSAGE_TEXT_MAX: Final = 40_000
MESSAGE_BLOCKS_MAX: Final = 50
MODAL_BLOCKS_MAX: Final = 100
MODAL_TITLE_MAX: Final = 24
MODAL_BUTTON_TEXT_MAX: Final = 24
PRIVATE_METADATA_MAX: Final = 3000
CALLBACK_ID_MAX: Final = 255
EXTERNAL_ID_MAX: Final = 255
BLOCK_ID_MAX: Final = 255
SECTION_TEXT_MAX: Final = 3000
SECTION_FIELDS_MAX: Final = 10
SECTION_FIELD_TEXT_MAX: Final = 2000
HEADER_TEXT_MAX: Final = 150
CONTEXT_ELEMENTS_MAX: Final = 10
ACTIONS_ELEMENTS_MAX: Final = 25
INPUT_LABEL_MAX: Final = 2000
# docs.slack.dev: option object, option group, select menu of external data source,
# block_suggestion payload.
OPTION_TEXT_MAX: Final = 75
OPTION_VALUE_MAX: Final = 150
OPTION_GROUP_LABEL_MAX: Final = 75
SUGGESTED_OPTIONS_MAX: Final = 100
SELECT_PLACEHOLDER_MAX: Final = 150
EXTERNAL_SELECT_TYPES: Final = frozenset({"external_select", "multi_external_select"})

_TEXT_TYPES: Final = frozenset({"plain_text", "mrkdwn"})
_MODAL_TYPES: Final = frozenset({"modal"})


def _error(what: str, pointer: str) -> str:
    return f"[ERROR] {what} [json-pointer:{pointer}]"


def _text_object_problems(
    value: Any, pointer: str, *, max_chars: int, plain_only: bool = False
) -> list[str]:
    if not isinstance(value, Mapping):
        return [_error("must be a text object", pointer)]
    kind = value.get("type")
    allowed = {"plain_text"} if plain_only else _TEXT_TYPES
    if kind not in allowed:
        return [_error(f"must be one of {sorted(allowed)}", f"{pointer}/type")]
    text = value.get("text")
    if not isinstance(text, str):
        return [_error("must provide a string", f"{pointer}/text")]
    if len(text) == 0:
        return [_error("must be more than 0 characters", f"{pointer}/text")]
    if len(text) > max_chars:
        return [_error(f"must be less than {max_chars + 1} characters", f"{pointer}/text")]
    return []


def _explicit_block_problems(block: Mapping[str, Any], pointer: str) -> list[str]:
    problems: list[str] = []
    block_id = block.get("block_id")
    if block_id is not None and (not isinstance(block_id, str) or len(block_id) > BLOCK_ID_MAX):
        problems.append(
            _error(f"must be less than {BLOCK_ID_MAX + 1} characters", f"{pointer}/block_id")
        )
    kind = block.get("type")
    if kind == "section":
        if "text" not in block and "fields" not in block:
            problems.append(_error("must provide text or fields", pointer))
        if "text" in block:
            problems += _text_object_problems(
                block["text"], f"{pointer}/text", max_chars=SECTION_TEXT_MAX
            )
        fields = block.get("fields")
        if fields is not None:
            if not isinstance(fields, list) or len(fields) > SECTION_FIELDS_MAX:
                problems.append(
                    _error(f"no more than {SECTION_FIELDS_MAX} items allowed", f"{pointer}/fields")
                )
            else:
                for index, field in enumerate(fields):
                    problems += _text_object_problems(
                        field, f"{pointer}/fields/{index}", max_chars=SECTION_FIELD_TEXT_MAX
                    )
    elif kind == "header":
        problems += _text_object_problems(
            block.get("text"), f"{pointer}/text", max_chars=HEADER_TEXT_MAX, plain_only=True
        )
    elif kind == "context":
        elements = block.get("elements")
        if not isinstance(elements, list) or not 1 <= len(elements) <= CONTEXT_ELEMENTS_MAX:
            problems.append(
                _error(f"must have 1 to {CONTEXT_ELEMENTS_MAX} items", f"{pointer}/elements")
            )
    elif kind == "actions":
        elements = block.get("elements")
        if not isinstance(elements, list) or not 1 <= len(elements) <= ACTIONS_ELEMENTS_MAX:
            problems.append(
                _error(f"must have 1 to {ACTIONS_ELEMENTS_MAX} items", f"{pointer}/elements")
            )
        else:
            problems += _duplicate_action_ids(elements, f"{pointer}/elements")
            problems += _misplaced_file_inputs(elements, f"{pointer}/elements")
            for index, element in enumerate(elements):
                if isinstance(element, Mapping):
                    problems += _external_select_problems(element, f"{pointer}/elements/{index}")
    elif kind == "input":
        problems += _text_object_problems(
            block.get("label"), f"{pointer}/label", max_chars=INPUT_LABEL_MAX, plain_only=True
        )
        element = block.get("element")
        if not isinstance(element, Mapping):
            problems.append(_error("missing required field: element", pointer))
        elif element.get("type") == "file_input":
            problems += _file_input_problems(element, f"{pointer}/element")
        else:
            problems += _external_select_problems(element, f"{pointer}/element")
    elif kind == "image":
        problems += _image_source_problems(block, pointer)
    if isinstance(block.get("accessory"), Mapping):
        problems += _misplaced_file_inputs([block["accessory"]], f"{pointer}/accessory")
        problems += _external_select_problems(block["accessory"], f"{pointer}/accessory")
    return problems


def option_problems(option: Any, pointer: str) -> list[str]:
    """docs.slack.dev, option object (in a select menu): ``text`` plain_text of at most 75
    characters, ``value`` a string of at most 150, optional ``description`` like ``text``."""
    if not isinstance(option, Mapping):
        return [_error("must be an option object", pointer)]
    problems = _text_object_problems(
        option.get("text"), f"{pointer}/text", max_chars=OPTION_TEXT_MAX, plain_only=True
    )
    value = option.get("value")
    if not isinstance(value, str) or not value:
        problems.append(_error("must provide a string", f"{pointer}/value"))
    elif len(value) > OPTION_VALUE_MAX:
        problems.append(
            _error(f"must be less than {OPTION_VALUE_MAX + 1} characters", f"{pointer}/value")
        )
    if option.get("description") is not None:
        problems += _text_object_problems(
            option["description"],
            f"{pointer}/description",
            max_chars=OPTION_TEXT_MAX,
            plain_only=True,
        )
    return problems


def _external_select_problems(element: Mapping[str, Any], pointer: str) -> list[str]:
    """docs.slack.dev, select menu of external data source: the options come from the app's
    options load URL, so the element itself carries none; ``min_query_length`` is a count."""
    kind = element.get("type")
    if kind not in EXTERNAL_SELECT_TYPES:
        return []
    problems: list[str] = []
    if not isinstance(element.get("action_id"), str) or not element["action_id"]:
        problems.append(_error("must provide a string", f"{pointer}/action_id"))
    for key in ("options", "option_groups"):
        if key in element:
            problems.append(_error(f"{key} is not allowed for {kind}", f"{pointer}/{key}"))
    if element.get("placeholder") is not None:
        problems += _text_object_problems(
            element["placeholder"],
            f"{pointer}/placeholder",
            max_chars=SELECT_PLACEHOLDER_MAX,
            plain_only=True,
        )
    min_query_length = element.get("min_query_length")
    if min_query_length is not None and (
        not isinstance(min_query_length, int)
        or isinstance(min_query_length, bool)
        or min_query_length < 0
    ):
        problems.append(_error("must be a non-negative integer", f"{pointer}/min_query_length"))
    if kind == "external_select":
        if "initial_options" in element:
            problems.append(_error(f"initial_options is not allowed for {kind}", pointer))
        if element.get("initial_option") is not None:
            problems += option_problems(element["initial_option"], f"{pointer}/initial_option")
    else:
        if "initial_option" in element:
            problems.append(_error(f"initial_option is not allowed for {kind}", pointer))
        initial = element.get("initial_options")
        if initial is not None:
            if not isinstance(initial, list):
                problems.append(_error("must be an array", f"{pointer}/initial_options"))
            else:
                for index, option in enumerate(initial):
                    problems += option_problems(option, f"{pointer}/initial_options/{index}")
        most = element.get("max_selected_items")
        if most is not None and (not isinstance(most, int) or isinstance(most, bool) or most < 1):
            problems.append(_error("must be at least 1", f"{pointer}/max_selected_items"))
    return problems


def suggestion_answer_problems(answer: Any) -> list[str]:
    """Why Slack would show no options for an app's answer to a ``block_suggestion``.

    docs.slack.dev (select menu of external data source, block_suggestion payload): a JSON
    object with either ``options`` (at most 100 option objects) or ``option_groups`` (at most
    100 groups, each a plain_text ``label`` of at most 75 characters and 1 to 100 options).
    Both at once is refused (the stricter reading: the docs say "either").
    """
    if not isinstance(answer, Mapping):
        return [_error("must be a JSON object", "")]
    has_options, has_groups = "options" in answer, "option_groups" in answer
    if has_options == has_groups:
        return [_error("must provide either options or option_groups", "")]
    key = "options" if has_options else "option_groups"
    items = answer[key]
    if not isinstance(items, list):
        return [_error("must be an array", f"/{key}")]
    if len(items) > SUGGESTED_OPTIONS_MAX:
        return [_error(f"no more than {SUGGESTED_OPTIONS_MAX} items allowed", f"/{key}")]
    problems: list[str] = []
    for index, item in enumerate(items):
        pointer = f"/{key}/{index}"
        if has_options:
            problems += option_problems(item, pointer)
            continue
        if not isinstance(item, Mapping):
            problems.append(_error("must be an option group", pointer))
            continue
        problems += _text_object_problems(
            item.get("label"), f"{pointer}/label", max_chars=OPTION_GROUP_LABEL_MAX, plain_only=True
        )
        options = item.get("options")
        if not isinstance(options, list) or not 1 <= len(options) <= SUGGESTED_OPTIONS_MAX:
            problems.append(
                _error(f"must have 1 to {SUGGESTED_OPTIONS_MAX} items", f"{pointer}/options")
            )
            continue
        for number, option in enumerate(options):
            problems += option_problems(option, f"{pointer}/options/{number}")
    return problems


def _image_source_problems(image: Mapping[str, Any], pointer: str) -> list[str]:
    """docs.slack.dev, image block and Slack file object: either `image_url` or `slack_file`,
    and a slack_file gives either its `id` or its `url`, never both."""
    has_url = image.get("image_url") is not None
    slack_file = image.get("slack_file")
    if has_url == (slack_file is not None):
        return [_error("must provide either image_url or slack_file", pointer)]
    if slack_file is None:
        return []
    if not isinstance(slack_file, Mapping):
        return [_error("must be an object", f"{pointer}/slack_file")]
    given = [key for key in ("id", "url") if isinstance(slack_file.get(key), str)]
    if len(given) != 1 or any(not slack_file[key] for key in given):
        return [_error("must provide either id or url", f"{pointer}/slack_file")]
    return []


def _file_input_problems(element: Mapping[str, Any], pointer: str) -> list[str]:
    """docs.slack.dev, file_input element: max_files 1 to 10, filetypes an array of strings."""
    problems: list[str] = []
    max_files = element.get("max_files")
    if max_files is not None and (
        not isinstance(max_files, int)
        or isinstance(max_files, bool)
        or not 1 <= max_files <= FILE_INPUT_MAX_FILES
    ):
        problems.append(
            _error(f"must be between 1 and {FILE_INPUT_MAX_FILES}", f"{pointer}/max_files")
        )
    filetypes = element.get("filetypes")
    if filetypes is not None and (
        not isinstance(filetypes, list) or not all(isinstance(t, str) and t for t in filetypes)
    ):
        problems.append(_error("must be an array of strings", f"{pointer}/filetypes"))
    return problems


def _misplaced_file_inputs(elements: list[Any], pointer: str) -> list[str]:
    # docs.slack.dev: a file_input works in input blocks only.
    return [
        _error("file_input is only allowed in input blocks", f"{pointer}/{index}/type")
        for index, element in enumerate(elements)
        if isinstance(element, Mapping) and element.get("type") == "file_input"
    ]


def _duplicate_action_ids(elements: list[Any], pointer: str) -> list[str]:
    seen: set[str] = set()
    problems: list[str] = []
    for index, element in enumerate(elements):
        action_id = element.get("action_id") if isinstance(element, Mapping) else None
        if isinstance(action_id, str):
            if action_id in seen:
                problems.append(
                    _error("duplicate action_id", f"{pointer}/{index}/action_id"),
                )
            seen.add(action_id)
    return problems


def _sdk_block_problems(block: Mapping[str, Any], pointer: str) -> list[str]:
    try:
        parsed = Block.parse(dict(block))
        if parsed is None:
            return [_error("unsupported type", f"{pointer}/type")]
        parsed.to_dict()  # runs every nested JsonValidator
    except (SlackObjectFormationError, TypeError, ValueError, AttributeError, KeyError) as exc:
        return [_error(f"{exc}", pointer)]
    return []


def block_problems(blocks: Any, *, pointer: str, max_blocks: int) -> list[str]:
    """Every reason Slack would refuse this ``blocks`` array (empty when it is fine)."""
    if not isinstance(blocks, list):
        return [_error("must be an array", pointer)]
    if len(blocks) > max_blocks:
        return [_error(f"no more than {max_blocks} items allowed", pointer)]
    problems: list[str] = []
    seen_block_ids: set[str] = set()
    for index, block in enumerate(blocks):
        block_pointer = f"{pointer}/{index}"
        if not isinstance(block, Mapping) or not isinstance(block.get("type"), str):
            problems.append(_error("missing required field: type", block_pointer))
            continue
        block_id = block.get("block_id")
        if isinstance(block_id, str):
            if block_id in seen_block_ids:
                problems.append(_error("duplicate block_id", f"{block_pointer}/block_id"))
            seen_block_ids.add(block_id)
        explicit = _explicit_block_problems(block, block_pointer)
        problems += explicit or _sdk_block_problems(block, block_pointer)
    return problems


def message_text_problems(text: Any) -> list[str]:
    """``msg_too_long`` reasons for a message's top-level ``text``."""
    if isinstance(text, str) and len(text) > MESSAGE_TEXT_MAX:
        return [_error(f"must be less than {MESSAGE_TEXT_MAX + 1} characters", "/text")]
    return []


def view_id_field_problems(view: Mapping[str, Any], pointer: str) -> list[str]:
    """private_metadata, callback_id and external_id past their limits (any view's)."""
    problems: list[str] = []
    for field, limit in (
        ("private_metadata", PRIVATE_METADATA_MAX),
        ("callback_id", CALLBACK_ID_MAX),
        ("external_id", EXTERNAL_ID_MAX),
    ):
        value = view.get(field)
        if value is not None and (not isinstance(value, str) or len(value) > limit):
            problems.append(
                _error(f"must be less than {limit + 1} characters", f"{pointer}/{field}")
            )
    return problems


def view_problems(view: Any) -> list[str]:
    """Every reason Slack would refuse this modal ``view`` (empty when it is fine)."""
    pointer = "/view"
    if not isinstance(view, Mapping):
        return [_error("must be an object", pointer)]
    problems: list[str] = []
    if view.get("type") not in _MODAL_TYPES:
        problems.append(_error("must be 'modal'", f"{pointer}/type"))
    problems += _text_object_problems(
        view.get("title"), f"{pointer}/title", max_chars=MODAL_TITLE_MAX, plain_only=True
    )
    for button in ("submit", "close"):
        if view.get(button) is not None:
            problems += _text_object_problems(
                view[button],
                f"{pointer}/{button}",
                max_chars=MODAL_BUTTON_TEXT_MAX,
                plain_only=True,
            )
    problems += view_id_field_problems(view, pointer)
    blocks = view.get("blocks")
    problems += block_problems(blocks, pointer=f"{pointer}/blocks", max_blocks=MODAL_BLOCKS_MAX)
    has_inputs = isinstance(blocks, list) and any(
        isinstance(b, Mapping) and b.get("type") == "input" for b in blocks
    )
    if has_inputs and view.get("submit") is None:
        # Documented: submit is required when a modal has input blocks.
        problems.append(_error("must provide submit when the view has input blocks", pointer))
    if not problems:
        try:
            View(**dict(view)).to_dict()  # the SDK's own limits, recursively
        except (SlackObjectFormationError, TypeError, ValueError, AttributeError, KeyError) as exc:
            problems.append(_error(f"{exc}", pointer))
    return problems
