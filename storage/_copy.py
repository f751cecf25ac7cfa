"""`ghl-bridge db copy`: every row of one bridge database into another, empty one.

Both ends are first opened as the store, so the source is migrated to the current version
and the target gets the schema; a database at one version has the same tables and columns
on both backends. The source is then read in one read transaction (a snapshot: a bridge may
go on writing to it) and the rows are written, ids kept, in one target transaction, so a
failure leaves the target as empty as it was.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from contextlib import aclosing
from pathlib import Path
from typing import TYPE_CHECKING

from storage._copy_ends import (
    COPIED_TABLES,
    TRIGGER_FILLED,
    CopyRefusedError,
    _End,
    _end,
    _reason,
    _SqliteEnd,
)
from storage._errors import StoreError
from storage._migrations import LATEST_VERSION
from storage._open import create_store

if TYPE_CHECKING:
    pass


DEFAULT_BATCH_SIZE = 1000

OnTable = Callable[[str, int], Awaitable[None]]


async def copy_database(
    source_url: str,
    target_url: str,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    on_table: OnTable | None = None,
) -> dict[str, int]:
    """Copy every table of `source_url` into the empty database `target_url`; rows per table.

    `on_table(table, rows)` is awaited after each table is written (not yet committed).
    CopyRefusedError (a ValueError) when the copy is refused before anything is written;
    StoreError when it fails, the target then left without any of the rows.
    """
    if batch_size < 1:
        raise CopyRefusedError("the batch size must be at least 1")
    source, target = await asyncio.to_thread(_ends, source_url, target_url)

    # Migrate the source to the current version, give the target the schema.
    for end in (source, target):
        await end.check_usable()
        async with create_store(end.url):
            pass

    await source.connect()
    try:
        await target.connect()
        try:
            return await _copy(source, target, batch_size=batch_size, on_table=on_table)
        finally:
            await target.close()
    finally:
        await source.close()


def _ends(source_url: str, target_url: str) -> tuple[_End, _End]:
    """Both ends, or CopyRefusedError for URLs that cannot be copied from or to."""
    source = _end(source_url, "source")
    target = _end(target_url, "target")
    if (
        isinstance(source, _SqliteEnd)
        and isinstance(target, _SqliteEnd)
        and os.path.realpath(source.path) == os.path.realpath(target.path)
    ):
        raise CopyRefusedError(f"the source and the target are the same database ({target})")
    if isinstance(source, _SqliteEnd) and not Path(source.path).is_file():
        # Opening it as the store would create an empty database and copy nothing.
        raise CopyRefusedError(f"the source {source} does not exist")
    return source, target


async def _copy(
    source: _End, target: _End, *, batch_size: int, on_table: OnTable | None
) -> dict[str, int]:
    if await source.is_same_database_as(target):
        raise CopyRefusedError(f"the source and the target are the same database ({target})")
    await source.begin_snapshot()
    try:
        await target.begin_write()
        try:
            counts = await _copy_tables(source, target, batch_size=batch_size, on_table=on_table)
            await target.commit()
        except BaseException:
            await target.rollback()
            raise
    finally:
        await source.end_snapshot()
    return counts


async def _copy_tables(
    source: _End, target: _End, *, batch_size: int, on_table: OnTable | None
) -> dict[str, int]:
    for end in (source, target):
        version = await end.schema_version()
        if version != LATEST_VERSION:
            raise StoreError(
                f"the {end.role} {end} is at schema version {version}, not {LATEST_VERSION}"
            )
    occupied = [table for table in COPIED_TABLES if await target.has_rows(table)]
    if occupied:
        raise CopyRefusedError(
            f"the target {target} is not empty (rows in {', '.join(occupied)}); "
            "copy only into a database no bridge has used"
        )
    failures: tuple[type[BaseException], ...] = (*source.errors, *target.errors, StoreError)
    counts: dict[str, int] = {}
    for table in COPIED_TABLES:
        columns = await source.columns(table)
        if set(columns) != set(await target.columns(table)):
            raise StoreError(f"table {table} has different columns in the source and the target")
        copied = 0
        try:
            if table in TRIGGER_FILLED:
                await target.clear(table)
            # aclosing: a failed write ends the read's statement before the snapshot ends.
            async with aclosing(source.read(table, columns, batch_size)) as batches:
                async for rows in batches:
                    await target.write(table, columns, rows)
                    copied += len(rows)
        except failures as exc:
            reason = str(exc) if isinstance(exc, StoreError) else _reason(exc)
            raise StoreError(f"copying {table} failed: {reason}") from exc
        counts[table] = copied
        if on_table is not None:
            await on_table(table, copied)
    await target.after_writes(COPIED_TABLES)
    return counts


__all__ = ["COPIED_TABLES", "CopyRefusedError", "copy_database"]
