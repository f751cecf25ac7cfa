"""A read-only file or folder and a full disk, made for real (no mocks), for any user.

Root ignores file permissions, so for root a read-only file or folder is made immutable
(`chattr +i`, which binds root too), and a full disk is a small tmpfs filled up; for anyone
else `chmod` does the first, and a file-size limit of 0 on the process (`prlimit`, which turns
every write to a regular file into EFBIG) stands in for the second.
"""

from __future__ import annotations

import contextlib
import errno
import os
import resource
import subprocess
from collections.abc import Iterator
from pathlib import Path

ROOT = os.geteuid() == 0


def _system(*command: str) -> None:
    subprocess.run(command, check=True)  # noqa: S603 - chattr/mount/umount on our own paths


@contextlib.contextmanager
def unwritable(path: Path) -> Iterator[None]:
    """`path` (a file or a folder) cannot be written, nor files be created in it, until the end."""
    if ROOT:
        _system("chattr", "+i", str(path))
        try:
            _assert_unwritable(path)
            yield
        finally:
            _system("chattr", "-i", str(path))
    else:
        mode = path.stat().st_mode
        path.chmod(0o555 if path.is_dir() else 0o444)
        try:
            _assert_unwritable(path)
            yield
        finally:
            path.chmod(mode)


def _assert_unwritable(path: Path) -> None:
    target = path / "probe" if path.is_dir() else path
    try:
        with open(target, "ab"):
            pass
    except PermissionError:
        return
    raise AssertionError(f"{target} is still writable")


@contextlib.contextmanager
def small_disk(folder: Path, *, size: str = "4m") -> Iterator[Path]:
    """Root only: a `size` tmpfs mounted on `folder` (unmounted at the end)."""
    folder.mkdir(parents=True, exist_ok=True)
    _system("mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(folder))
    try:
        yield folder
    finally:
        _system("umount", "--lazy", str(folder))


@contextlib.contextmanager
def filled(folder: Path) -> Iterator[None]:
    """The disk `folder` is on has no free byte left until the end (a filler file is removed)."""
    filler = folder / "filler"
    with open(filler, "wb", buffering=0) as out:
        chunk = bytes(65536)
        try:
            while True:
                out.write(chunk)  # a short write first, then ENOSPC
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
    try:
        yield
    finally:
        filler.unlink()


@contextlib.contextmanager
def no_file_writes(pid: int) -> Iterator[None]:
    """Process `pid` can write no byte to any regular file (RLIMIT_FSIZE 0) until the end."""
    soft, hard = resource.prlimit(pid, resource.RLIMIT_FSIZE)
    resource.prlimit(pid, resource.RLIMIT_FSIZE, (0, hard))
    try:
        yield
    finally:
        resource.prlimit(pid, resource.RLIMIT_FSIZE, (soft, hard))
