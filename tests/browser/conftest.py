"""Fixtures for the real-browser tests of the staff web admin.

Browser: Debian's ``chromium`` (``/usr/bin/chromium``, installed by ``.ci/run``), driven by
Playwright through pytest-playwright. ``playwright install`` is never used: it downloads
browsers, and these machines have no network. Without the browser or the package the
tests are skipped with the reason; with ``CONSENTRY_TEST_REQUIRE_BROWSER=1`` (set by
``.ci/run``) they fail instead, so CI cannot pass by silently testing nothing.

Server: one real ``consentry serve`` per test module (see ``live_server.py``), on a fresh
SQLite file, or on a fresh PostgreSQL database when ``CONSENTRY_TEST_DATABASE_URL`` is set,
like the rest of the suite.

Failure screenshots: pytest-playwright's ``--screenshot`` defaults to ``only-on-failure``
here (files under ``test-results/``), and a failing test's report ends with the tail of
the server's log.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import asyncpg
import pytest

from tests.browser.live_server import LiveServer, fresh_database
from tests.server.test_mail import LocalSmtp

try:
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import sync_playwright
except ImportError:  # reported by pytest_runtest_setup below, before any fixture runs
    PlaywrightError = Exception  # type: ignore[misc,assignment]  # stand-in, never raised
    sync_playwright = None  # type: ignore[assignment]  # checked by browser_problem()

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, BrowserType, Page, Playwright

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",  # CI runs as root, where Chromium's sandbox cannot start
    "--disable-gpu",
    "--disable-background-networking",  # no network here: no update or safe-browsing calls
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ACTION_TIMEOUT_MS = 10_000  # a local server answers in milliseconds; fail fast, not in 30 s
REQUIRE_BROWSER = os.environ.get("CONSENTRY_TEST_REQUIRE_BROWSER") == "1"
PG_URL = os.environ.get("CONSENTRY_TEST_DATABASE_URL", "")
REQUIRE_PG = os.environ.get("CONSENTRY_TEST_REQUIRE_POSTGRES") == "1"


def browser_problem(config: pytest.Config) -> str:
    """Why no browser test can run here, or "" if they can."""
    if sync_playwright is None or not config.pluginmanager.hasplugin("playwright"):
        return (
            "the pytest-playwright plugin is not installed or not enabled "
            "(pip install -c constraints.txt -e '.[test]')"
        )
    if not (CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK)):
        return (
            f"no Chromium at {CHROMIUM} (apt-get install chromium; "
            "`playwright install` cannot download browsers here)"
        )
    return ""


def unavailable(problem: str) -> NoReturn:
    """Skip, or fail when CI requires the browser tests."""
    if REQUIRE_BROWSER:
        pytest.fail(
            f"browser tests are required (CONSENTRY_TEST_REQUIRE_BROWSER=1) but {problem}",
            pytrace=False,
        )
    pytest.skip(f"browser tests need a browser: {problem}")


def pytest_configure(config: pytest.Config) -> None:
    explicit = any(arg.startswith("--screenshot") for arg in config.invocation_params.args)
    if getattr(config.option, "screenshot", None) == "off" and not explicit:
        config.option.screenshot = "only-on-failure"


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Before any fixture: without the package even the fixture names are missing."""
    problem = browser_problem(item.config)
    if problem:
        unavailable(problem)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    server = getattr(item, "funcargs", {}).get("consentry")
    if report.failed and isinstance(server, LiveServer):
        report.sections.append(("consentry serve log (last lines)", server.log_tail()))
    return report


# --- the browser ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def browser_type_launch_args(pytestconfig: pytest.Config) -> dict[str, Any]:
    """pytest-playwright's hook for launch options: Debian's Chromium, headless."""
    return {
        "executable_path": str(CHROMIUM),
        "headless": not pytestconfig.getoption("--headed", default=False),
        "args": CHROMIUM_ARGS,
    }


# pytest-playwright starts Playwright once per session. Between sync calls Playwright marks
# its event loop as running in the main thread, and then every asyncio test collected
# after this package fails ("Cannot run the event loop while another loop is running").
# So Playwright, and the fixtures built on it, live for this package only.


@pytest.fixture(scope="package")
def playwright() -> Iterator[Playwright]:
    assert sync_playwright is not None  # pytest_runtest_setup skipped us otherwise
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="package")
def browser_type(playwright: Playwright) -> BrowserType:
    return playwright.chromium  # the one browser installed here


@pytest.fixture(scope="package")
def browser(
    browser_type: BrowserType, browser_type_launch_args: dict[str, Any]
) -> Iterator[Browser]:
    try:
        launched = browser_type.launch(**browser_type_launch_args)
    except PlaywrightError as exc:
        unavailable(f"{CHROMIUM} did not start: {str(exc).strip().splitlines()[0]}")
    yield launched
    launched.close()


@pytest.fixture(scope="module")
def browser_context_args(consentry: LiveServer) -> dict[str, Any]:
    """Every page of a module talks to that module's server."""
    return {"base_url": consentry.base_url, "locale": "en-GB", "timezone_id": "UTC"}


@pytest.fixture
def context(new_context: Callable[..., BrowserContext]) -> BrowserContext:
    """The default browser session of a test (pytest-playwright's ``page`` opens in it)."""
    opened = new_context()
    opened.set_default_timeout(ACTION_TIMEOUT_MS)
    return opened


@pytest.fixture
def other_browser(new_context: Callable[..., BrowserContext]) -> Callable[..., Page]:
    """Opens a page in a separate browser session with its own cookies: another person
    at another computer. Keyword arguments go to ``new_context`` (e.g. ``viewport``)."""

    def open_page(**options: Any) -> Page:
        opened = new_context(**options)
        opened.set_default_timeout(ACTION_TIMEOUT_MS)
        return opened.new_page()

    return open_page


# --- the server ----------------------------------------------------------------------------


@contextmanager
def served(
    tmp_path_factory: pytest.TempPathFactory,
    name: str,
    settings: Callable[[LiveServer], dict[str, str]] | None = None,
) -> Iterator[LiveServer]:
    """A real ``consentry serve`` on its own empty database, stopped before the database is
    dropped; ``settings`` adds environment that needs the server itself (its address)."""
    home = tmp_path_factory.mktemp(name)
    with ExitStack() as cleanup:
        try:
            database_url = cleanup.enter_context(fresh_database(home, PG_URL))
        except (OSError, asyncpg.PostgresError) as exc:
            if REQUIRE_PG:
                pytest.fail(f"PostgreSQL required but unreachable at {PG_URL}: {exc}")
            pytest.skip(f"PostgreSQL unreachable: {exc}")
        server = LiveServer(home, database_url)
        if settings is not None:
            server.env.update(settings(server))
        cleanup.callback(server.stop)
        server.start()
        yield server


def mail_settings(mailbox: LocalSmtp) -> Callable[[LiveServer], dict[str, str]]:
    """Outgoing mail to the test's SMTP server and links that point at the server itself,
    as a deployment would have them."""
    return lambda server: {
        "CONSENTRY_SMTP_HOST": "127.0.0.1",
        "CONSENTRY_SMTP_PORT": str(mailbox.port),
        "CONSENTRY_PUBLIC_URL": server.base_url,
    }


@pytest.fixture(scope="module")
def consentry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A real ``consentry serve`` for one test module, on its own empty database."""
    with served(tmp_path_factory, "consentry-browser") as server:
        yield server
