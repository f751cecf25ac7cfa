"""The small HTML pages a person's browser lands on during a HighLevel install."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
body {{ font-family: -apple-system, "Segoe UI", Roboto, sans-serif; max-width: 36rem;
       margin: 4rem auto; padding: 0 1rem; color: #1d1c1d; line-height: 1.5; }}
h1 {{ font-size: 1.4rem; }} code {{ background: #f4f4f4; padding: 0 .25rem; }}
</style></head>
<body><h1>{title}</h1>{body}</body></html>
"""


def _page(title: str, body: str) -> str:
    return _PAGE.format(title=escape(title), body=body)


def connected_page(
    kind: str, accounts: Sequence[tuple[str, str | None]], failed: Sequence[tuple[str, str]] = ()
) -> str:
    """The install worked: which sub-accounts are connected, and what to do next in Slack."""
    names = "".join(
        f"<li>{escape(name or location_id)} <small>({escape(location_id)})</small></li>"
        for location_id, name in accounts
    )
    if accounts:
        what = (
            "The agency's sub-accounts now connected to Slack:"
            if kind == "Company"
            else "This HighLevel sub-account is now connected to Slack:"
        )
        body = f"<p>{what}</p><ul>{names}</ul>"
    else:
        body = (
            "<p>The agency is connected, but the app is not installed in any of its "
            "sub-accounts yet. Install it in a sub-account and it is connected at once.</p>"
        )
    if failed:
        problems = "".join(
            f"<li>{escape(location_id)}: {escape(reason)}</li>" for location_id, reason in failed
        )
        body += (
            "<p>These could not be connected; install the app again to retry them:</p>"
            f"<ul>{problems}</ul>"
        )
    body += (
        "<p><strong>Next, in Slack:</strong> in the channel that should work with a "
        "sub-account, type <code>/highlevel link &lt;sub-account name&gt;</code>, then "
        "<code>/highlevel inbox</code> in the channel where its new conversations should open. "
        "<code>/highlevel status</code> shows every connected sub-account.</p>"
        "<p>You can close this page.</p>"
    )
    title = "HighLevel connected" if accounts else "HighLevel agency connected"
    return _page(title, body)


def failed_page(reason: str, *, install_url: str | None) -> str:
    """The install did not work: why, and how to try again."""
    again = (
        f'<p><a href="{escape(install_url, quote=True)}">Start the install again</a>.</p>'
        if install_url
        else ""
    )
    return _page("HighLevel was not connected", f"<p>{escape(reason)}</p>{again}")


def not_configured_page() -> str:
    """This bridge has no Marketplace app, so there is nothing to install."""
    return _page(
        "Connecting through HighLevel is not set up",
        "<p>This bridge connects one sub-account with a Private Integration Token. To connect "
        "sub-accounts through a HighLevel Marketplace app, set <code>GHL_CLIENT_ID</code>, "
        "<code>GHL_CLIENT_SECRET</code>, <code>PUBLIC_URL</code> and "
        "<code>TOKEN_ENCRYPTION_KEY</code> and restart it.</p>",
    )


# ---------------------------------------------------------------- Slack's install


def slack_installed_page(team_name: str | None, *, highlevel_connect: bool) -> str:
    """The app is in the workspace now: what to do next there."""
    where = escape(team_name) if team_name else "your workspace"
    connect = (
        "<li>An admin types <code>/highlevel connect</code> to connect HighLevel "
        "sub-accounts, then <code>/highlevel link &lt;sub-account name&gt;</code> in the "
        "channel that should work with one, and <code>/highlevel inbox</code> where its new "
        "conversations should open.</li>"
        if highlevel_connect
        else "<li>An admin types <code>/highlevel link &lt;sub-account name&gt;</code> in the "
        "channel that should work with a sub-account, and <code>/highlevel inbox</code> where "
        "its new conversations should open.</li>"
    )
    body = (
        f"<p>HighLevel Bridge is installed in {where}.</p>"
        "<p><strong>Next, in Slack:</strong></p><ol>"
        "<li>Invite <code>@highlevel</code> to the channels it should post in.</li>"
        f"{connect}"
        "<li>Type <code>/sendsms help</code> to see how to text a customer.</li></ol>"
        "<p>You can close this page.</p>"
    )
    return _page("Installed in Slack", body)


def slack_not_installed_page(reason: str, *, install_url: str) -> str:
    """Slack's install did not complete: why, and how to try again."""
    again = f'<p><a href="{escape(install_url, quote=True)}">Start the install again</a>.</p>'
    return _page("HighLevel Bridge was not installed", f"<p>{escape(reason)}</p>{again}")


def slack_install_off_page() -> str:
    """This bridge serves one workspace by its bot token: there is no install to run."""
    return _page(
        "Installing into workspaces is not set up",
        "<p>This bridge serves one Slack workspace with <code>SLACK_BOT_TOKEN</code>. To let "
        "any workspace install it, set <code>SLACK_CLIENT_ID</code>, "
        "<code>SLACK_CLIENT_SECRET</code>, <code>PUBLIC_URL</code> and "
        "<code>TOKEN_ENCRYPTION_KEY</code>; the README's \"Distribute to several "
        'workspaces" says how.</p>',
    )
