"""Shared fixtures: a clean environment, so a developer's shell or .env never leaks into tests;
the PostgreSQL server of TEST_DATABASE_URL, a fresh schema per test (tests/_postgres.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bot.settings import HINTS
from tests import _postgres


def pytest_configure(config: pytest.Config) -> None:
    _postgres.configure(config)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    _postgres.mark_items(items)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    _postgres.setup_item(item)


def pytest_unconfigure(config: pytest.Config) -> None:
    _postgres.unconfigure(config)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, exitstatus: int, config: pytest.Config
) -> Iterator[None]:
    # After the short test summary, so the line is the last before the counts.
    yield
    _postgres.report(terminalreporter, config)


@pytest.fixture
def postgres_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A postgresql:// URL whose search_path is a new empty schema, dropped after the test.

    Without a server: skipped (the run ends with a loud line), or with CI=true the run stops.
    """
    with _postgres.server(request.config).fresh_schema() as (_name, url):
        yield url


@pytest.fixture(autouse=True)
def _clean_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[None]:
    for name in HINTS:
        monkeypatch.delenv(name, raising=False)
    # pydantic-settings reads `.env` from the working directory; run where there is none.
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))
    yield
