"""SQLAlchemy Core 2.x (async) against the hand-written store, on webhook ingest and sends.

A standalone script, not part of `make bench`. SQLAlchemy is no dependency of the project:
it needs `pip install 'sqlalchemy[asyncio]>=2'` in the venv it runs from (without it, it says
so and exits 2), and the PostgreSQL at 127.0.0.1:5432 (database `test`, trust auth). Run
`python -m bench.store_backends [--rounds 5 --events 800 --sends 240]`.

The question: would one store implementation over SQLAlchemy Core cost more than 15 % of
ingest or outbound throughput against hand-written code? (If so, keep two backends, aiosqlite
and asyncpg, behind one Store protocol.) The variants run the same statements on the same
schema, each on one connection of its own, one transaction per operation:

a.  today: `storage.SqliteStore` itself, on a file in a temporary folder;
b1. SQLAlchemy Core on that same file (sqlite+aiosqlite; BEGIN IMMEDIATE, WAL and
    synchronous=NORMAL as today), each statement built from Table/select/insert/update on
    every call, as ported code would, and compiled once thanks to SQLAlchemy's cache;
b2. the same code keeping each statement it built (the tuning SQLAlchemy recommends), to show
    how much of the cost tuning takes back;
c.  raw asyncpg on PostgreSQL, written the way the store is, in a fresh schema (the project's
    migrations in PostgreSQL's types) that is dropped at the end;
d1, d2. the code of b1 and b2 on that schema (postgresql+asyncpg).

Ingest is `enqueue_inbound` (dedupe look-up, dedupe insert, INSERT ... RETURNING, commit) of
unique events with a ~1 kB payload and two dedupe keys. A send is `enqueue`, `claim_next` and
`mark_sent`, each its own transaction. After a warm-up, each round gives every variant the
same number of each, in slices the variants take in rotation (the machine is shared), and
yields operations per second and the process CPU per operation (time.process_time: it counts
aiosqlite's threads, not the PostgreSQL server). Each SQLAlchemy variant is compared with the
hand-written one of its backend round by round; b1 and d1, the port as written, decide.
"""

from __future__ import annotations

import importlib.util
import sys

# asyncpg has types only where asyncpg-stubs is installed, and SQLAlchemy is not installed in
# the project's venv at all: there `make typecheck` takes both as untyped (Any). This package is
# checked with SQLAlchemy's own types from a venv that has it; `unused-ignore` lets the imports
# of its modules pass both. The check below runs first, whichever module is imported: a package
# runs its __init__ before any of its modules.
try:
    import sqlalchemy as sa  # type: ignore[import-not-found, unused-ignore]
except ImportError:
    sa_missing = True
else:
    # SQLAlchemy's asyncio layer runs on greenlet, which `sqlalchemy[asyncio]` installs.
    sa_missing = (
        importlib.util.find_spec("greenlet") is None or int(sa.__version__.split(".")[0]) < 2
    )
if sa_missing:
    print(
        "bench.store_backends needs SQLAlchemy 2 with asyncio, which the project does not"
        " install: pip install 'sqlalchemy[asyncio]>=2'",
        file=sys.stderr,
    )
    raise SystemExit(2)
