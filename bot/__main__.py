"""The `ghl-bridge` command line (also `python -m bot`).

`serve` loads only what serving needs: the demo, `doctor` and the sandbox are imported by the
command that runs them, and their options only when that command is on the command line.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import shutil
import sys
import textwrap
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from bot.settings import Settings, SettingsError, load_settings

if TYPE_CHECKING:
    from storage import AuditRow

EXIT_CONFIG = 2
PACKAGE = "ghl-bridge"
# The commands whose options come from a module `serve` must not import.
LAZY_COMMANDS = frozenset({"sandbox", "demo", "doctor"})


def package_version() -> str:
    """The installed package's version, else the one in the pyproject.toml beside the source."""
    from importlib import metadata

    try:
        return metadata.version(PACKAGE)
    except metadata.PackageNotFoundError:
        import tomllib

        pyproject = Path(__file__).resolve().parent.parent / "pyproject.toml"
        try:
            with pyproject.open("rb") as file:
                return str(tomllib.load(file)["project"]["version"])
        except (OSError, tomllib.TOMLDecodeError, KeyError):
            return "unknown"


class _VersionAction(argparse.Action):
    """`--version`, looking the version up only when asked."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(
            option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, nargs=0, **kwargs
        )

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: object,
        option_string: str | None = None,
    ) -> None:
        print(f"{PACKAGE} {package_version()}")
        parser.exit()


def environment_variable(name: str) -> str:
    """The environment variable a `Settings` field is read from."""
    prefix = Settings.model_config.get("env_prefix") or ""
    return f"{prefix}{name}".upper()


def shown_default(field: FieldInfo) -> str:
    """A field's default as a person sets it: a value, `unset`, or `required`."""
    extra = field.json_schema_extra
    if isinstance(extra, dict) and isinstance(extra.get("default_text"), str):
        return str(extra["default_text"])
    if field.default_factory is not None:
        return "computed"
    if field.default is PydanticUndefined:
        return "required"
    if field.default is None or field.default == frozenset():
        return "unset"
    if isinstance(field.default, float):
        return f"{field.default:g}"
    return str(field.default)


def help_width() -> int:
    """argparse's own line width, for the text it does not wrap."""
    return max(60, min(100, shutil.get_terminal_size().columns - 2))


def environment_help(width: int | None = None) -> str:
    """Every environment variable `serve` reads, with its meaning and default, from `Settings`."""
    width = width or help_width()
    fields = Settings.model_fields
    column = max(len(environment_variable(name)) for name in fields) + 4
    lines = [
        "environment variables (also read from a .env file in the working directory):",
        "",
    ]
    for name, field in fields.items():
        text = f"{field.description or ''} (default: {shown_default(field)})"
        lines.extend(
            textwrap.wrap(
                text,
                width=width,
                initial_indent=f"  {environment_variable(name)}".ljust(column),
                subsequent_indent=" " * column,
                break_on_hyphens=False,
            )
        )
    return "\n".join(lines)


def _sandbox_arguments(parser: argparse.ArgumentParser) -> None:
    from bot.sandbox.highlevel import cli

    cli.add_arguments(parser)


def _demo_arguments(parser: argparse.ArgumentParser) -> None:
    from bot import demo

    demo.add_arguments(parser)


def _doctor_arguments(parser: argparse.ArgumentParser) -> None:
    from bot import doctor

    doctor.add_arguments(parser)


LAZY_ARGUMENTS: dict[str, Callable[[argparse.ArgumentParser], None]] = {
    "sandbox": _sandbox_arguments,
    "demo": _demo_arguments,
    "doctor": _doctor_arguments,
}


def build_parser(options_for: Collection[str] = LAZY_COMMANDS) -> argparse.ArgumentParser:
    """The whole command line; only the commands in `options_for` get their own options.

    Adding a command's options imports its module, so `main` asks only for the command it runs.
    """
    parser = argparse.ArgumentParser(
        prog=PACKAGE,
        description="Text, email and WhatsApp HighLevel customers from Slack.",
    )
    parser.add_argument(
        "--version", action=_VersionAction, help="print the version of ghl-bridge and exit"
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    commands.add_parser(
        "serve",
        help="run the Slack app, the webhook endpoint and the workers",
        description=textwrap.fill(
            "Run the Slack app, the HighLevel webhook endpoint and the workers until SIGINT "
            "or SIGTERM. Configured by the environment variables below.",
            width=help_width(),
        ),
        epilog=environment_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sandbox = commands.add_parser(
        "sandbox",
        help="run the HighLevel simulator alone, for a dry run with a real Slack workspace",
        description="Serve a spec-faithful HighLevel simulator and print the settings that "
        "point the bridge at it.",
    )
    demo_parser = commands.add_parser(
        "demo",
        help="run a scripted conversation on the bundled sandboxes (no accounts needed)",
        description="Start both simulators and a real bridge on loopback, drive a scripted "
        "conversation through signed Slack requests, and print what Slack would show.",
    )
    doctor_parser = commands.add_parser(
        "doctor",
        help="check the configuration, both APIs, the database and inbound delivery",
        description="Run each check and print ✓ or ✗ with the fix in one line. "
        "Exit 0 only when all pass.",
    )
    commands.add_parser(
        "keygen",
        help="print a new TOKEN_ENCRYPTION_KEY",
        description=textwrap.fill(
            "Print a new key for TOKEN_ENCRYPTION_KEY (Fernet: 32 random bytes, url-safe "
            "base64), which encrypts the HighLevel tokens the bridge stores. Give every "
            "instance the same key and keep it: a lost key means connecting every "
            "sub-account again.",
            width=help_width(),
        ),
    )
    _add_db_command(commands)
    _add_audit_command(commands)
    subparsers = {"sandbox": sandbox, "demo": demo_parser, "doctor": doctor_parser}
    for command in options_for:
        LAZY_ARGUMENTS[command](subparsers[command])
    return parser


def _add_db_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`db copy --from URL --to URL`: its options need no import, so they are always there."""
    db_parser = commands.add_parser(
        "db",
        help="manage the bridge's database (copy it to another, e.g. to PostgreSQL)",
        description="Database maintenance.",
    )
    db_commands = db_parser.add_subparsers(dest="db_command", metavar="SUBCOMMAND", required=True)
    copy_parser = db_commands.add_parser(
        "copy",
        help="copy every row into an empty database (SQLite or PostgreSQL)",
        description=textwrap.fill(
            "Copy every table of the bridge's database (thread map, messages, outbox, "
            "inbound events, dedupe marks, key/value entries, ...) into another, empty one, "
            "keeping ids. Both are migrated to this version first. The source is read as one "
            "snapshot, so a bridge may keep running on it; stop it before pointing "
            "DATABASE_URL at the target. Exit 0 when copied, 2 when refused (non-empty "
            "target, same database, bad URL), 1 when the copy failed (the target then "
            "holds none of the rows).",
            width=help_width(),
        ),
    )
    copy_parser.add_argument(
        "--from",
        dest="source",
        required=True,
        metavar="URL",
        help="the database to copy: sqlite:///path.db or postgresql://user:password@host/db",
    )
    copy_parser.add_argument(
        "--to",
        dest="target",
        required=True,
        metavar="URL",
        help="the empty database to copy into; it is given the bridge's tables if need be",
    )


def _add_audit_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`audit --since DATE ...`: its options need no import, so they are always there."""
    audit = commands.add_parser(
        "audit",
        help="print every send in a time window (CSV or JSON lines), without message bodies",
        description=textwrap.fill(
            "Print every send made in the window from DATABASE_URL (the environment or .env; "
            "nothing else is needed): time, Slack workspace, channel and person, sub-account, "
            "contact, channel type, HighLevel message ids, outcome and status history, "
            "quiet-hours overrides and resends. No message body, phone number or email "
            "address. Times are UTC. The database is migrated to this version first. Exit 2 "
            "for a bad date or DATABASE_URL, 1 when the database cannot be read.",
            width=help_width(),
        ),
    )
    audit.add_argument(
        "--since",
        required=True,
        metavar="WHEN",
        help="sends made at or after: a date (YYYY-MM-DD, from its midnight UTC) or an ISO time",
    )
    audit.add_argument(
        "--until",
        metavar="WHEN",
        help="sends made before: an ISO time, or a date (up to its end, included)",
    )
    audit.add_argument("--location", metavar="ID", help="one sub-account (location id) only")
    audit.add_argument(
        "--format",
        dest="output_format",
        choices=("csv", "jsonl"),
        default="csv",
        help="csv (with a header line; the default) or jsonl (one JSON object per send)",
    )


def audit_database_url() -> str:
    """DATABASE_URL as `serve` reads it (environment, else .env, else its default), without
    the settings `serve` needs besides; ValueError when it names no database."""
    from pydantic_settings import BaseSettings, SettingsConfigDict

    from storage import validate_database_url

    class DatabaseSettings(BaseSettings):
        model_config = SettingsConfigDict(
            env_file=".env",
            env_file_encoding="utf-8",
            extra="ignore",
            case_sensitive=False,
            env_prefix=Settings.model_config.get("env_prefix") or "",
        )
        database_url: str = str(Settings.model_fields["database_url"].default)

    return validate_database_url(DatabaseSettings().database_url.strip())


def run_audit(args: argparse.Namespace) -> int:
    """Print the audit rows on stdout; one line on stderr when it cannot."""
    from bot import audit
    from storage import StoreError, create_store, is_postgres_url, parse_sqlite_url, redact_url

    configure_logging("WARNING")
    try:
        since = audit.parse_when(args.since)
        until = None if args.until is None else audit.parse_when(args.until, end_of_day=True)
        url = audit_database_url()
    except ValueError as exc:
        print(f"ghl-bridge audit: {_one_line(exc)}", file=sys.stderr)
        return EXIT_CONFIG
    if not is_postgres_url(url) and not Path(parse_sqlite_url(url)).is_file():
        # Opening it as the store would create an empty database.
        print(f"ghl-bridge audit: the database {redact_url(url)} does not exist", file=sys.stderr)
        return EXIT_CONFIG

    async def read() -> list[AuditRow]:
        async with create_store(url) as store:
            return await store.audit_rows(since, until, args.location)

    try:
        rows = asyncio.run(read())
    except StoreError as exc:
        print(f"ghl-bridge audit: {_one_line(exc)}", file=sys.stderr)
        return 1
    audit.write(rows, sys.stdout, args.output_format)
    return 0


def run_db(args: argparse.Namespace) -> int:
    if args.db_command == "copy":
        return run_db_copy(args.source, args.target)
    raise AssertionError(f"unhandled db command {args.db_command!r}")


def run_db_copy(source: str, target: str) -> int:
    """Copy the database, printing rows per table; one line on stderr when it does not."""
    from storage import StoreError, copy_database, redact_url

    configure_logging("WARNING")

    async def report(table: str, rows: int) -> None:
        print(f"  {table:<22} {rows:>9} rows", flush=True)

    try:
        counts = asyncio.run(copy_database(source, target, on_table=report))
    except ValueError as exc:  # refused before anything was written
        print(f"ghl-bridge db copy: {_one_line(exc)}", file=sys.stderr)
        return EXIT_CONFIG
    except StoreError as exc:
        print(
            f"ghl-bridge db copy: failed, nothing was copied: {_one_line(exc)}",
            file=sys.stderr,
        )
        return 1
    except Exception as exc:  # a bug: still one line; the copy was rolled back
        print(
            f"ghl-bridge db copy: failed unexpectedly, nothing was copied: "
            f"{type(exc).__name__}: {_one_line(exc)}",
            file=sys.stderr,
        )
        return 1
    print(
        f"copied {sum(counts.values())} rows from {redact_url(source)} to {redact_url(target)}, "
        "as they were when the copy started"
    )
    print(
        "Stop the old instance before switching DATABASE_URL to the target: "
        "what it writes to the source from now on is not in the copy."
    )
    return 0


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def command_in(argv: Sequence[str]) -> str | None:
    """The command named on the command line (the top level has no options taking a value)."""
    return next((arg for arg in argv if not arg.startswith("-")), None)


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
    arguments = list(sys.argv[1:] if argv is None else argv)
    command = command_in(arguments)
    parser = build_parser(options_for=[name for name in LAZY_COMMANDS if name == command])
    args = parser.parse_args(arguments)
    if args.command == "serve":
        return run_serve()
    if args.command == "demo":
        from bot import demo

        return asyncio.run(demo.run(args))
    if args.command == "doctor":
        from bot import doctor

        configure_logging("WARNING")
        return asyncio.run(doctor.run(args))
    if args.command == "db":
        return run_db(args)
    if args.command == "audit":
        return run_audit(args)
    if args.command == "keygen":
        from cryptography.fernet import Fernet

        print(Fernet.generate_key().decode("ascii"))
        return 0
    if args.command == "sandbox":
        from bot.sandbox.highlevel import cli as sandbox_cli

        configure_logging("INFO")
        return asyncio.run(sandbox_cli.run(args))
    raise AssertionError(f"unhandled command {args.command!r}")


if __name__ == "__main__":
    sys.exit(main())
