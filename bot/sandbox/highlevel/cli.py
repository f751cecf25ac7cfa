"""``ghl-bridge sandbox``: run the HighLevel simulator in the foreground until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ._faults import Faults
from ._oauth import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET
from ._prompt import contact_line, run_prompt, stdin_prompt_fd
from ._routes import CONTROL_PREFIX
from ._simulator import DEFAULT_LOCATION_ID, DEFAULT_TOKEN, HighLevelSimulator

__all__ = ["add_arguments", "env_lines", "location_lines", "reply_example", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8765, help="port (0 picks a free one)")
    parser.add_argument(
        "--webhook-url",
        help="where to POST signed InboundMessage/OutboundMessage events, e.g. "
        "http://127.0.0.1:3000/ghl/webhooks (without it the bridge must poll)",
    )
    parser.add_argument(
        "--no-prompt",
        action="store_true",
        help="no `sandbox>` prompt on the terminal (there is none when stdin is not a terminal)",
    )
    parser.add_argument("--location-id", default=DEFAULT_LOCATION_ID, help="sub-account id")
    parser.add_argument("--token", default=DEFAULT_TOKEN, help="bearer token the API accepts")
    parser.add_argument(
        "--signing-key-file",
        type=Path,
        help="Ed25519 private key (PEM) for webhook signatures; created if missing "
        "(default: a new key each run)",
    )
    parser.add_argument(
        "--locations",
        type=_positive,
        default=1,
        metavar="N",
        help="sub-accounts of the sandbox agency, each with its own contacts and token; with "
        "N > 1 it prints the Marketplace app (OAuth) settings to point the bridge at",
    )
    parser.add_argument(
        "--token-ttl",
        type=_positive,
        default=86399,
        metavar="SECONDS",
        help="lifetime of OAuth access tokens (HighLevel: 86399)",
    )
    parser.add_argument("--client-id", default=DEFAULT_CLIENT_ID, help="Marketplace app client id")
    parser.add_argument(
        "--client-secret", default=DEFAULT_CLIENT_SECRET, help="Marketplace app client secret"
    )
    parser.add_argument("--rate-limit-max", type=int, default=100, help="requests per interval")
    parser.add_argument("--rate-limit-interval-ms", type=int, default=10_000)
    faults = parser.add_argument_group("fault injection")
    faults.add_argument("--latency", type=float, default=0.0, help="seconds added per request")
    faults.add_argument("--burst-429", type=int, default=0, metavar="N", help="next N get 429")
    faults.add_argument("--error-rate", type=float, default=0.0, metavar="P", help="share of 5xx")
    faults.add_argument(
        "--hang-rate", type=float, default=0.0, metavar="P", help="share of requests that hang"
    )
    faults.add_argument(
        "--store-then-500-rate",
        type=float,
        default=0.0,
        metavar="P",
        help="share of sends stored (webhook fired) but answered 500",
    )
    faults.add_argument(
        "--faults-only-sends",
        action="store_true",
        help="apply faults to POST /conversations/messages only (default: every request)",
    )
    faults.add_argument("--seed", type=int, default=0, help="seed of the fault dice")


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _signing_key(path: Path | None) -> Ed25519PrivateKey | None:
    if path is None:
        return None
    if path.exists():
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise SystemExit(f"{path} does not hold an Ed25519 private key")
        return key
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path.write_bytes(pem)
    path.chmod(0o600)
    return key


def reply_example(sim: HighLevelSimulator) -> str:
    """A curl command that makes a seeded customer reply through the sandbox's own route."""
    who = next((c.id for c in sim.contacts.values() if c.phone), "{contactId}")
    return (
        f"curl -X POST {sim.base_url}{CONTROL_PREFIX}customers/{who}/reply "
        """-H 'Content-Type: application/json' -d '{"body": "Is my order ready?"}'"""
    )


def env_lines(sim: HighLevelSimulator, *, oauth: bool = False) -> list[str]:
    """``NAME=value`` lines for a shell ``export`` or a ``.env`` file.

    The PEM is one line: its newlines become literal ``\\n`` inside double quotes, which both
    keep as-is (python-dotenv turns them into newlines; the bridge accepts either form).
    ``oauth``: the Marketplace app's settings instead of the first location's PIT.
    """
    pem = sim.public_key_pem.strip().replace("\n", "\\n")
    if oauth:
        credentials = [
            f"GHL_CLIENT_ID={sim.oauth.client_id}",
            f"GHL_CLIENT_SECRET={sim.oauth.client_secret}",
            f"GHL_MARKETPLACE_URL={sim.base_url}",
        ]
    else:
        credentials = [f"GHL_API_TOKEN={sim.token}", f"GHL_LOCATION_ID={sim.location_id}"]
    return [
        f"GHL_API_URL={sim.base_url}",
        *credentials,
        f'GHL_WEBHOOK_PUBLIC_KEY="{pem}\\n"',
    ]


def location_lines(sim: HighLevelSimulator) -> list[str]:
    """One line per location: id, name and its Private Integration Token."""
    return [
        f"  {location_id}  {sim.location_name(location_id):<18} token={sim.pit_for(location_id)}"
        for location_id in sim.location_ids
    ]


async def run(args: argparse.Namespace) -> int:
    faults = Faults(
        latency=args.latency,
        burst_429=args.burst_429,
        error_rate=args.error_rate,
        hang_rate=args.hang_rate,
        store_then_500_rate=args.store_then_500_rate,
        scope="sends" if args.faults_only_sends else "all",
    )
    sim = HighLevelSimulator(
        location_id=args.location_id,
        token=args.token,
        rate_limit_max=args.rate_limit_max,
        rate_limit_interval_ms=args.rate_limit_interval_ms,
        webhook_url=args.webhook_url,
        signing_key=_signing_key(args.signing_key_file),
        seed=args.seed,
        faults=faults,
        locations=args.locations,
        token_ttl=args.token_ttl,
        oauth_client_id=args.client_id,
        oauth_client_secret=args.client_secret,
    )
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    installed: list[signal.Signals] = []
    prompt: asyncio.Task[None] | None = None
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # no signals off-main/Windows
            loop.add_signal_handler(signum, stop.set)
            installed.append(signum)
    try:
        base_url = await sim.start(args.host, args.port)
        out = sys.stdout
        print(f"HighLevel sandbox listening on {base_url}", file=out)
        several = len(sim.location_ids) > 1
        if several:
            print(f"Sub-accounts (locations) of agency {sim.company_id}:", file=out)
            for line in location_lines(sim):
                print(line, file=out)
        print("Seeded contacts:", file=out)
        for contact in sim.contacts.values():
            where = f" location={contact.location_id}" if several else ""
            print(contact_line(contact) + where, file=out)
        target = args.webhook_url or "nowhere (pass --webhook-url to receive them)"
        print(f"Webhooks go to {target}", file=out)
        print(
            "Point ghl-bridge at it (prefix each line with `export ` or put them in .env):",
            file=out,
        )
        if several:
            print(
                "As a Marketplace app (OAuth; installs go through "
                f"{sim.base_url}/oauth/chooselocation, access tokens live {args.token_ttl} s):",
                file=out,
            )
        for line in env_lines(sim, oauth=several):
            print(line, file=out)
        if several:
            print(
                "and the bridge's own: PUBLIC_URL=<its URL, e.g. http://127.0.0.1:3000> and "
                "TOKEN_ENCRYPTION_KEY=<`ghl-bridge keygen`>; then open PUBLIC_URL/ghl/install "
                "(or `/highlevel connect` in Slack) to connect a sub-account",
                file=out,
            )
        print(
            "Make a customer reply (stored in the conversation for polling, and sent as a "
            "signed webhook when --webhook-url is set; the contact is an id, phone, email or "
            "name):",
            file=out,
        )
        print(f"  {reply_example(sim)}", file=out)
        fd = None if args.no_prompt else stdin_prompt_fd(sys.stdin)
        if fd is not None:
            print("or type `reply ada Is my order ready?` below (`help` lists commands).", file=out)
            prompt = asyncio.create_task(run_prompt(sim, fd, out, stop), name="sandbox-prompt")
        out.flush()
        await stop.wait()
    finally:
        if prompt is not None:
            prompt.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await prompt
        for signum in installed:
            loop.remove_signal_handler(signum)
        await sim.stop()
    return 0
