"""Select menus of external data source: the simulator's view checks, the driver's
block_suggestion (against a real Bolt app over HTTP), choosing an option, and the profile and
team fields an app reads about people."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from bot.sandbox.slack import OptionsLoadError, SlackDriver, SlackSimulator
from tests.sandbox_slack._support import ALICE, modal, refused

SIGNING_SECRET = "sandbox-signing-secret"


def option(text: str, value: str | None = None) -> dict[str, Any]:
    return {"text": {"type": "plain_text", "text": text}, "value": value or text.lower()}


CAROL = option("Carol Client", "contact-carol")
DAVE = option("Dave Doe", "contact-dave")
KEPT = option("Kept Contact", "contact-kept")


def picker_view(**contact_extra: Any) -> dict[str, Any]:
    """A modal: a contact external_select in an input block, a tags multi_external_select in
    an actions block (which dispatches block_actions), and a pre-filled owner select."""
    return modal(
        callback_id="pick",
        blocks=[
            {
                "type": "input",
                "block_id": "who",
                "label": {"type": "plain_text", "text": "Contact"},
                "element": {
                    "type": "external_select",
                    "action_id": "contact",
                    "placeholder": {"type": "plain_text", "text": "Search contacts"},
                    **contact_extra,
                },
            },
            {
                "type": "actions",
                "block_id": "tagging",
                "elements": [
                    {"type": "multi_external_select", "action_id": "tags", "min_query_length": 0}
                ],
            },
            {
                "type": "input",
                "block_id": "owner",
                "optional": True,
                "label": {"type": "plain_text", "text": "Owner"},
                "element": {
                    "type": "external_select",
                    "action_id": "owner",
                    "initial_option": KEPT,
                },
            },
        ],
    )


# ---------------------------------------------------------------------- the view checks


async def test_views_open_accepts_external_selects(
    sim: SlackSimulator, client: AsyncWebClient
) -> None:
    answer = await client.views_open(
        trigger_id=sim.issue_trigger_id(ALICE), view=picker_view(min_query_length=2)
    )

    assert answer["ok"]
    [opened] = sim.open_views(ALICE)
    assert opened.blocks[0]["element"]["type"] == "external_select"


@pytest.mark.parametrize(
    ("extra", "where"),
    [
        ({"options": [CAROL]}, "/view/blocks/0/element/options"),
        ({"option_groups": [{"label": CAROL["text"], "options": [CAROL]}]}, "option_groups"),
        ({"min_query_length": "3"}, "/view/blocks/0/element/min_query_length"),
        ({"min_query_length": -1}, "/view/blocks/0/element/min_query_length"),
        ({"initial_option": option("x" * 76)}, "/view/blocks/0/element/initial_option/text"),
        ({"initial_option": option("Ok", "v" * 151)}, "/view/blocks/0/element/initial_option"),
        ({"initial_options": [CAROL]}, "initial_options is not allowed"),
    ],
)
async def test_views_open_refuses_a_malformed_external_select(
    sim: SlackSimulator, client: AsyncWebClient, extra: dict[str, Any], where: str
) -> None:
    answer = await refused(
        client.views_open(trigger_id=sim.issue_trigger_id(ALICE), view=picker_view(**extra))
    )

    assert answer["error"] == "invalid_arguments"
    assert any(where in m for m in answer["response_metadata"]["messages"])
    assert sim.open_views() == []


async def test_a_multi_external_select_with_options_is_refused_in_an_actions_block(
    sim: SlackSimulator, client: AsyncWebClient
) -> None:
    view = picker_view()
    view["blocks"][1]["elements"][0]["options"] = [CAROL]

    answer = await refused(client.views_open(trigger_id=sim.issue_trigger_id(ALICE), view=view))

    assert any(
        "/view/blocks/1/elements/0/options" in m for m in answer["response_metadata"]["messages"]
    )


# ---------------------------------------------------------------------- against a Bolt app


@dataclass
class Stage:
    sim: SlackSimulator
    driver: SlackDriver
    client: AsyncWebClient
    base_url: str
    # (path the request came to, body) in arrival order, per kind.
    received: dict[str, list[tuple[str, dict[str, Any]]]] = field(default_factory=dict)

    async def open_picker(self, **contact_extra: Any) -> str:
        answer = await self.client.views_open(
            trigger_id=self.sim.issue_trigger_id(ALICE), view=picker_view(**contact_extra)
        )
        return str(answer["view"]["id"])

    def bodies(self, kind: str) -> list[dict[str, Any]]:
        return [body for _, body in self.received.get(kind, [])]


@pytest.fixture
async def stage(sim: SlackSimulator, client: AsyncWebClient) -> AsyncIterator[Stage]:
    received: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    app = AsyncApp(
        signing_secret=SIGNING_SECRET,
        client=AsyncWebClient(token=sim.bot_token, base_url=sim.api_url),
    )

    def keep(kind: str, body: dict[str, Any], context: dict[str, Any]) -> None:
        received.setdefault(kind, []).append((context["path"], body))

    @app.options("contact")
    async def load_contacts(ack: AsyncAck, body: dict[str, Any], context: Any) -> None:
        keep("block_suggestion", body, context)
        typed = body["value"]
        if typed == "slow":
            await asyncio.sleep(1.0)
        if typed == "too long":
            await ack(options=[option("x" * 76)])
        elif typed == "too many":
            await ack(options=[option(f"Contact {n}") for n in range(101)])
        elif typed == "nothing":
            await ack()
        elif typed == "groups":
            await ack(
                option_groups=[
                    {"label": {"type": "plain_text", "text": "Recent"}, "options": [CAROL]},
                    {"label": {"type": "plain_text", "text": "Others"}, "options": [DAVE]},
                ]
            )
        else:
            matches = [o for o in (CAROL, DAVE) if typed.lower() in o["text"]["text"].lower()]
            await ack(options=matches)

    @app.options("tags")
    async def load_tags(ack: AsyncAck, body: dict[str, Any], context: Any) -> None:
        keep("block_suggestion", body, context)
        await ack(options=[option("VIP"), option("Lead")])

    @app.action("tags")
    async def on_tags(ack: AsyncAck, body: dict[str, Any], context: Any) -> None:
        await ack()
        keep("block_actions", body, context)

    @app.action("contact")
    async def on_contact(ack: AsyncAck, body: dict[str, Any], context: Any) -> None:
        await ack()
        keep("block_actions", body, context)

    @app.view("pick")
    async def on_submit(ack: AsyncAck, body: dict[str, Any], context: Any) -> None:
        await ack()
        keep("view_submission", body, context)

    async def dispatch(request: web.Request) -> web.StreamResponse:
        bolt_request = await to_bolt_request(request)
        bolt_request.context["path"] = request.path
        return await to_aiohttp_response(await app.async_dispatch(bolt_request))

    server = web.Application()
    server.router.add_post("/slack/events", dispatch)
    server.router.add_post("/slack/options", dispatch)
    runner = web.AppRunner(server, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    base_url = f"http://{host}:{port}"
    driver = SlackDriver(f"{base_url}/slack/events", SIGNING_SECRET, sim)
    try:
        yield Stage(sim, driver, client, base_url, received)
    finally:
        await driver.aclose()
        await runner.cleanup()


async def test_block_suggestion_round_trip_returns_the_apps_options(stage: Stage) -> None:
    view_id = await stage.open_picker()

    options = await stage.driver.block_suggestion(view_id, "contact", "car", user_id=ALICE)

    assert options == [CAROL]
    assert options.option_groups is None
    assert options.result.status == 200
    [body] = stage.bodies("block_suggestion")
    assert body["type"] == "block_suggestion"
    assert (body["action_id"], body["block_id"], body["value"]) == ("contact", "who", "car")
    assert body["container"] == {"type": "view", "view_id": view_id}
    assert body["view"]["id"] == view_id
    assert body["view"]["state"]["values"]["owner"]["owner"]["selected_option"] == KEPT
    assert body["user"]["id"] == ALICE
    assert body["team"]["id"] == stage.sim.team_id
    assert body["api_app_id"] == stage.sim.app_id
    # Without an Options Load URL, Slack uses the Request URL.
    assert [path for path, _ in stage.received["block_suggestion"]] == ["/slack/events"]


async def test_block_suggestion_goes_to_the_options_load_url(stage: Stage) -> None:
    driver = SlackDriver(
        f"{stage.base_url}/slack/events",
        SIGNING_SECRET,
        stage.sim,
        options_url=f"{stage.base_url}/slack/options",
    )
    try:
        view_id = await stage.open_picker()
        options = await driver.block_suggestion(view_id, "contact", "doe", user_id=ALICE)
    finally:
        await driver.aclose()

    assert options == [DAVE]
    assert [path for path, _ in stage.received["block_suggestion"]] == ["/slack/options"]


async def test_option_groups_come_back_flat_and_grouped(stage: Stage) -> None:
    view_id = await stage.open_picker()

    options = await stage.driver.block_suggestion(view_id, "contact", "groups", user_id=ALICE)

    assert options == [CAROL, DAVE]
    assert options.option_groups is not None
    assert [g["label"]["text"] for g in options.option_groups] == ["Recent", "Others"]


async def test_a_slow_answer_times_out_at_the_deadline(stage: Stage) -> None:
    view_id = await stage.open_picker()

    started = time.monotonic()
    with pytest.raises(OptionsLoadError) as failure:
        await stage.driver.block_suggestion(
            view_id, "contact", "slow", user_id=ALICE, deadline_seconds=0.2
        )
    waited = time.monotonic() - started

    assert failure.value.timed_out
    assert "timed out" in str(failure.value)
    assert failure.value.result is None
    assert waited < 0.9  # abandoned at the deadline, not after the app's 1 s
    # The same driver goes on working afterwards.
    assert await stage.driver.block_suggestion(view_id, "contact", "dave", user_id=ALICE) == [DAVE]


@pytest.mark.parametrize(
    ("typed", "problem"),
    [
        ("too long", "/options/0/text/text"),
        ("too many", "no more than 100 items allowed"),
        ("nothing", "must be a JSON object"),
    ],
)
async def test_a_malformed_answer_is_refused(stage: Stage, typed: str, problem: str) -> None:
    view_id = await stage.open_picker()

    with pytest.raises(OptionsLoadError) as failure:
        await stage.driver.block_suggestion(view_id, "contact", typed, user_id=ALICE)

    assert failure.value.reason == "malformed"
    assert not failure.value.timed_out
    assert any(problem in p for p in failure.value.problems)
    assert failure.value.result is not None and failure.value.result.status == 200


async def test_no_suggestion_before_min_query_length(stage: Stage) -> None:
    view_id = await stage.open_picker()  # no min_query_length: Slack's default, 3

    with pytest.raises(ValueError, match="min_query_length"):
        await stage.driver.block_suggestion(view_id, "contact", "ca", user_id=ALICE)
    assert stage.bodies("block_suggestion") == []

    other = await stage.open_picker(min_query_length=0)
    assert await stage.driver.block_suggestion(other, "contact", "", user_id=ALICE) == [
        CAROL,
        DAVE,
    ]


async def test_a_chosen_option_is_in_the_submitted_state(stage: Stage) -> None:
    view_id = await stage.open_picker()
    [carol] = await stage.driver.block_suggestion(view_id, "contact", "carol", user_id=ALICE)

    sent = await stage.driver.choose_external(view_id, "contact", carol, user_id=ALICE)
    result = await stage.driver.view_submission(view_id, user_id=ALICE)

    assert sent is None  # an input block without dispatch_action: Slack sends nothing yet
    assert stage.bodies("block_actions") == []
    assert result.status == 200
    [body] = stage.bodies("view_submission")
    values = body["view"]["state"]["values"]
    assert values["who"]["contact"] == {"type": "external_select", "selected_option": CAROL}
    # Untouched, the pre-filled one sends its initial option back, text and all.
    assert values["owner"]["owner"] == {"type": "external_select", "selected_option": KEPT}
    assert stage.sim.open_views(ALICE) == []


async def test_an_unanswered_optional_external_select_submits_null(stage: Stage) -> None:
    view_id = await stage.open_picker()

    await stage.driver.view_submission(
        view_id, user_id=ALICE, values={"who": {"contact": DAVE}, "owner": {"owner": None}}
    )

    [body] = stage.bodies("view_submission")
    values = body["view"]["state"]["values"]
    assert values["who"]["contact"]["selected_option"] == DAVE
    assert values["owner"]["owner"] == {"type": "external_select", "selected_option": None}


async def test_choosing_in_an_actions_block_sends_block_actions(stage: Stage) -> None:
    view_id = await stage.open_picker()
    vip, lead = await stage.driver.block_suggestion(view_id, "tags", "", user_id=ALICE)

    result = await stage.driver.choose_external(view_id, "tags", [vip, lead], user_id=ALICE)

    assert result is not None and result.status == 200
    [body] = stage.bodies("block_actions")
    [action] = body["actions"]
    assert action["type"] == "multi_external_select"
    assert (action["action_id"], action["block_id"]) == ("tags", "tagging")
    assert action["selected_options"] == [vip, lead]
    tags = body["view"]["state"]["values"]["tagging"]["tags"]
    assert tags == {"type": "multi_external_select", "selected_options": [vip, lead]}
    # The next payload about this view still carries the choice.
    await stage.driver.block_suggestion(view_id, "contact", "dave", user_id=ALICE)
    later = stage.bodies("block_suggestion")[-1]["view"]["state"]["values"]
    assert later["tagging"]["tags"]["selected_options"] == [vip, lead]


async def test_choose_external_refuses_what_slack_could_not_show(stage: Stage) -> None:
    view_id = await stage.open_picker()

    with pytest.raises(ValueError, match="not an option"):
        await stage.driver.choose_external(view_id, "contact", option("x" * 76), user_id=ALICE)
    with pytest.raises(ValueError, match="choose one"):
        await stage.driver.choose_external(view_id, "contact", [CAROL, DAVE], user_id=ALICE)
    with pytest.raises(ValueError, match="no element"):
        await stage.driver.choose_external(view_id, "nope", CAROL, user_id=ALICE)


# ---------------------------------------------------------------------- people and the team


async def test_users_info_carries_the_profile_names_and_title(
    sim: SlackSimulator, client: AsyncWebClient
) -> None:
    sim.add_user(
        "U0CAROL",
        "carol",
        "Carol Ann Client",
        email="carol@example.com",
        first_name="Carol",
        last_name="Client",
        title="Head of Sales",
    )

    carol = (await client.users_info(user="U0CAROL"))["user"]["profile"]
    alice = (await client.users_info(user=ALICE))["user"]["profile"]

    assert (carol["first_name"], carol["last_name"], carol["title"]) == (
        "Carol",
        "Client",
        "Head of Sales",
    )
    assert (carol["real_name"], carol["display_name"]) == ("Carol Ann Client", "carol")
    assert carol["email"] == "carol@example.com"
    # Not given: the words of the real name, and no title.
    assert (alice["first_name"], alice["last_name"], alice["title"]) == ("Alice", "Agent", "")


async def test_team_info_names_the_workspace(sim: SlackSimulator) -> None:
    acme = sim.add_workspace("T0ACME", "Acme Corp")
    own = AsyncWebClient(token=sim.bot_token, base_url=sim.api_url)
    theirs = AsyncWebClient(token=sim.bot_token_for("T0ACME"), base_url=sim.api_url)

    mine = (await own.team_info())["team"]
    acme_team = (await theirs.team_info())["team"]

    assert (mine["id"], mine["name"], mine["domain"]) == ("T0SANDBOX", "sandbox", "sandbox")
    assert (acme_team["id"], acme_team["name"]) == ("T0ACME", acme.team_name)
    assert acme_team["name"] == "Acme Corp"
    assert (await refused(own.team_info(team="T0ACME")))["error"] == "team_not_found"
