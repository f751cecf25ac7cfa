"""The `ghl-bridge` command line (also `python -m bot`)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence

from bot import demo, doctor
from bot.sandbox.highlevel import cli as sandbox_cli
from bot.settings import SettingsError, load_settings

EXIT_CONFIG = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ghl-bridge",
        description="Text, email and WhatsApp HighLevel customers from Slack.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    commands.add_parser("serve", help="run the Slack app, the webhook endpoint and the workers")
    sandbox = commands.add_parser(
        "sandbox",
        help="run the HighLevel simulator alone, for a dry run with a real Slack workspace",
        description="Serve a spec-faithful HighLevel simulator and print the settings that "
        "point the bridge at it.",
    )
    sandbox_cli.add_arguments(sandbox)
    demo_parser = commands.add_parser(
        "demo",
        help="run a scripted conversation on the bundled sandboxes (no accounts needed)",
        description="Start both simulators and a real bridge on loopback, drive a scripted "
        "conversation through signed Slack requests, and print what Slack would show.",
    )
    demo.add_arguments(demo_parser)
    doctor_parser = commands.add_parser(
        "doctor",
        help="check the configuration, both APIs, the database and inbound delivery",
        description="Run each check and print ✓ or ✗ with the fix in one line. "
        "Exit 0 only when all pass.",
    )
    doctor.add_arguments(doctor_parser)
    return parser


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # Third-party request logs can carry URLs with ids; keep them below INFO.
    for noisy in ("httpx", "httpcore", "aiohttp.access", "slack_bolt", "slack_sdk"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))


def run_serve() -> int:
    from bot.server import ServeError, serve

    try:
        settings = load_settings()
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        return EXIT_CONFIG
    configure_logging(settings.log_level)
    try:
        asyncio.run(serve(settings))
    except ServeError as exc:
        print(f"ghl-bridge: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        return run_serve()
    if args.command == "demo":
        return asyncio.run(demo.run(args))
    if args.command == "doctor":
        configure_logging("WARNING")
        return asyncio.run(doctor.run(args))
    if args.command == "sandbox":
        configure_logging("INFO")
        return asyncio.run(sandbox_cli.run(args))
    raise AssertionError(f"unhandled command {args.command!r}")


if __name__ == "__main__":
    sys.exit(main())
