"""What `ghl-bridge doctor` says of installed workspaces, and the scopes the install asks for."""

from __future__ import annotations

from pathlib import Path

from bot.doctor.manifest import read_bot_scopes
from bot.doctor.workspaces import SLACK_INSTALL, SLACK_WORKSPACE, workspace_checks
from bot.sandbox.slack import SlackSimulator
from bot.sandbox.stack import AGENT_USER, SandboxStack
from bot.slack_install.flow import BOT_SCOPES

MANIFEST = Path(__file__).parents[2] / "manifest.yml"


def test_the_install_asks_for_exactly_the_manifests_bot_scopes() -> None:
    assert sorted(BOT_SCOPES) == sorted(read_bot_scopes(MANIFEST.read_text("utf-8")))


async def test_doctor_gives_one_line_per_installed_workspace(tmp_path: Path) -> None:
    sim = SlackSimulator(post_rate_per_second=50.0, post_burst=50, admins=(AGENT_USER,))
    sim.add_workspace("T0ACME", "Acme")
    async with SandboxStack(tmp_path / "bridge.sqlite3", slack=sim, slack_oauth=True) as stack:
        assert stack.settings is not None
        before = await workspace_checks(stack.settings)
        assert [(c.name, c.ok) for c in before] == [(SLACK_INSTALL, True), (SLACK_WORKSPACE, True)]
        assert "none installed yet" in before[1].detail
        for team in (sim.team_id, "T0ACME"):
            page = await stack.install_slack(team)
            assert page.status == 200, page.text
        checks = await workspace_checks(stack.settings)
        lines = [c for c in checks if c.name == SLACK_WORKSPACE]
        assert len(lines) == 2
        assert all(c.ok for c in lines), [c.detail for c in lines]
        assert any("Acme (T0ACME): works as @" in c.detail for c in lines)
        # A workspace whose token Slack no longer takes is named, with what to do.
        sim.installs.revoke_team("T0ACME")
        after = {c.detail.split(":")[0]: c for c in await workspace_checks(stack.settings)}
        acme = after["Acme (T0ACME)"]
        assert not acme.ok
        assert "token_revoked" in acme.detail
        assert acme.fix is not None and "/slack/install" in acme.fix
