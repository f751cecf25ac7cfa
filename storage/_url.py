"""DATABASE_URL parsing: sqlite:/// (SQLAlchemy's convention) or postgresql://."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

MEMORY = ":memory:"

# `sqlite+aiosqlite` is what SQLAlchemy's async engine calls the same thing; accepting it
# spares people who copy a URL from an SQLAlchemy project a confusing error.
_PREFIXES = ("sqlite:///", "sqlite+aiosqlite:///")

_EXPECTED = "expected sqlite:///relative/path.db, sqlite:////absolute/path.db or sqlite:///:memory:"


def parse_sqlite_url(database_url: str) -> str:
    """The file path (or ':memory:') named by an sqlite URL; ValueError for anything else.

    `sqlite:///data/bridge.db` is relative to the working directory, `sqlite:////var/x.db`
    is absolute (the fourth slash starts the path).
    """
    prefix = next((p for p in _PREFIXES if database_url.startswith(p)), None)
    if prefix is None:
        scheme = database_url.partition(":")[0] or database_url
        raise ValueError(f"unsupported database URL scheme {scheme!r}; {_EXPECTED}")
    path = database_url[len(prefix) :]
    if not path:
        raise ValueError(f"database URL {database_url!r} names no file; {_EXPECTED}")
    if "?" in path or "#" in path:
        # Query options (mode=ro, cache=shared, ...) would be silently ignored otherwise.
        raise ValueError(f"database URL {database_url!r} must not carry options; {_EXPECTED}")
    if path.endswith("/"):
        raise ValueError(f"database URL {database_url!r} names a directory; {_EXPECTED}")
    return path


POSTGRES_PREFIXES = ("postgresql://", "postgres://", "postgresql+asyncpg://")


def is_postgres_url(database_url: str) -> bool:
    return database_url.startswith(POSTGRES_PREFIXES)


def postgres_dsn(database_url: str) -> str:
    """The asyncpg DSN of a PostgreSQL URL; ValueError if it names no host or database."""
    if not is_postgres_url(database_url):
        raise ValueError(f"not a PostgreSQL URL: {redact_url(database_url)}")
    dsn = "postgresql://" + database_url.split("://", 1)[1]
    parts = urlsplit(dsn)
    if not parts.hostname and "host=" not in parts.query:
        raise ValueError(f"database URL {redact_url(database_url)} names no host")
    if not parts.path.strip("/"):
        raise ValueError(f"database URL {redact_url(database_url)} names no database")
    return dsn


def validate_database_url(database_url: str) -> str:
    """The URL if it names an SQLite file or a PostgreSQL database; else ValueError."""
    if is_postgres_url(database_url):
        postgres_dsn(database_url)
    else:
        try:
            parse_sqlite_url(database_url)
        except ValueError as exc:
            raise ValueError(f"{exc}, or postgresql://user:password@host:5432/database") from None
    return database_url


def redact_url(url: str) -> str:
    """The URL with its password replaced by ***, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))
