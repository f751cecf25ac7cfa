"""`serve` spares httpcore a failed `import sniffio` on every HighLevel request.

httpcore imports sniffio each time it sets up a lock (several times per request) and falls back
to asyncio when it is missing; Python caches no failed import, so each try searched sys.path
again (about 0.6 ms of CPU per send). encode/httpcore#1103.
"""

from __future__ import annotations

import importlib.util
import sys

import httpcore._synchronization as httpcore_sync
import pytest

from bot.server import skip_absent_sniffio


def test_an_absent_sniffio_is_not_searched_for_on_every_http_request(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """httpcore imports sniffio on each lock it sets up; a failed import is not cached."""
    # As on a machine without sniffio (undone after the test, whatever it sets).
    monkeypatch.setitem(sys.modules, "sniffio", None)
    monkeypatch.delitem(sys.modules, "sniffio")
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *args: None if name == "sniffio" else real_find_spec(name, *args),
    )
    searches = []

    class Watch:
        @staticmethod
        def find_spec(name: str, *_: object) -> None:
            if name == "sniffio":
                searches.append(name)

    monkeypatch.setattr(sys, "meta_path", [Watch(), *sys.meta_path])
    skip_absent_sniffio()
    assert httpcore_sync.current_async_library() == "asyncio"
    assert httpcore_sync.current_async_library() == "asyncio"
    assert searches == []
