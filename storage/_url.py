"""DATABASE_URL parsing, following SQLAlchemy's sqlite URL convention."""

from __future__ import annotations

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
