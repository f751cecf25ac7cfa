"""Shared fixtures: a clean environment, so a developer's shell or .env never leaks into tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bot.settings import HINTS


@pytest.fixture(autouse=True)
def _clean_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[None]:
    for name in HINTS:
        monkeypatch.delenv(name, raising=False)
    # pydantic-settings reads `.env` from the working directory; run where there is none.
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))
    yield
