"""Test fixtures. The environment is set before any application module is imported.

Engines: SQLite by default. Set ``CONSENTRY_TEST_DATABASE_URL=postgresql://...`` to run
the same suite on PostgreSQL. ``CONSENTRY_TEST_REQUIRE_POSTGRES=1`` (set by ``.ci/run``)
turns "PostgreSQL unreachable" from a skip into a failure.

Isolation: the real migrations run once per session into a template database; every test
gets a fresh copy (a copied SQLite file, or ``CREATE DATABASE ... TEMPLATE`` on PostgreSQL).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

_TMP = Path(tempfile.mkdtemp(prefix="consentry-tests-"))
os.environ["CONSENTRY_HOME"] = str(_TMP / "home")
os.environ["CONSENTRY_LOG_JSON"] = "1"
os.environ["CONSENTRY_COOKIE_SECURE"] = "0"
os.environ["CONSENTRY_CONTROLLER_NAME"] = "Example Ltd"
os.environ.pop("CONSENTRY_DATABASE_URL", None)
os.environ.pop("CONSENTRY_MASTER_KEY", None)

import asyncpg  # noqa: E402
import pyotp  # noqa: E402
import pytest  # noqa: E402
from argon2 import PasswordHasher  # noqa: E402
from httpx import ASGITransport, AsyncClient  # noqa: E402
from litestar import Litestar  # noqa: E402

from audit.signing import write_signing_key  # noqa: E402
from server import db  # noqa: E402
from server.app import create_app  # noqa: E402
from server.auth import passwords  # noqa: E402
from server.auth.service import TOTP_LABEL, StaffIdentity  # noqa: E402
from server.auth.tables import StaffUser  # noqa: E402
from server.dbroles import grant_app_role  # noqa: E402
from server.gateway import Actor  # noqa: E402
from server.logs import configure_logging  # noqa: E402
from server.migrate import apply_migrations  # noqa: E402
from server.services import Services, build_services  # noqa: E402
from server.settings import Settings, set_settings  # noqa: E402
from server.vault import write_key_file  # noqa: E402

# In this process only, staff passwords are hashed with argon2id at its cheapest (1 MiB,
# t=1) instead of the product's 64 MiB, t=3 (~0.14 s a hash, two or more per test: minutes
# over the suite). Hashing and verifying still go through the same functions; the CLI and
# browser tests run ``consentry`` in a subprocess, with the real parameters.
passwords._hasher = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
passwords._DUMMY_HASH = passwords._hasher.hash("not anyone's password")

PG_URL = os.environ.get("CONSENTRY_TEST_DATABASE_URL", "")
# On PostgreSQL the tests connect as the application role, as production does (documented
# in README.md): SELECT/INSERT only on the audit tables. The owner (PG_URL's user) runs the
# migrations and does what only an owner can, such as the tampering in the audit tests.
APP_ROLE = "consentry_app"
REQUIRE_PG = os.environ.get("CONSENTRY_TEST_REQUIRE_POSTGRES") == "1"
ENGINE = "postgres" if PG_URL else "sqlite"
PASSWORD = "correct horse battery staple"


def pytest_report_header() -> str:
    return f"consentry database engine: {ENGINE}" + (f" ({PG_URL})" if PG_URL else "")


def as_app_role(url: str) -> str:
    """The same database, connected to as the application role."""
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit(parts._replace(netloc=f"{APP_ROLE}@{host}"))


def owner_url(url: str) -> str:
    """The same database, connected to as its owner (PG_URL's user)."""
    if not PG_URL:
        return url
    owner = urlsplit(PG_URL).netloc.rsplit("@", 1)
    host = urlsplit(url).netloc.rsplit("@", 1)[-1]
    netloc = f"{owner[0]}@{host}" if len(owner) == 2 else host
    return urlunsplit(urlsplit(url)._replace(netloc=netloc))


def _pg_admin_dsn() -> str:
    base = PG_URL.rsplit("/", 1)[0]
    return f"{base}/postgres"


async def _pg_admin(sql: str) -> None:
    conn = await asyncpg.connect(_pg_admin_dsn())
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def key_file() -> Path:
    path = _TMP / "keys" / "master.key"
    write_key_file(path)
    return path


@pytest.fixture(scope="session")
def signing_key_file() -> Path:
    path = _TMP / "keys" / "audit-signing.key"
    write_signing_key(path)
    return path


@pytest.fixture(scope="session")
def template_url() -> Iterator[str]:
    """Run the real migrations once into a template database."""
    if PG_URL:
        name = f"consentry_tmpl_{os.getpid()}"
        try:
            asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}"'))
            asyncio.run(_pg_admin(f'CREATE DATABASE "{name}"'))
        except (OSError, asyncpg.PostgresError) as exc:
            if REQUIRE_PG:
                pytest.fail(f"PostgreSQL required but unreachable at {PG_URL}: {exc}")
            pytest.skip(f"PostgreSQL unreachable: {exc}")
        url = f"{PG_URL.rsplit('/', 1)[0]}/{name}"
    else:
        url = f"sqlite:///{_TMP / 'template.sqlite3'}"

    async def migrate() -> None:
        engine = db.set_engine(db.engine_for_url(url))
        await db.start(engine)
        await apply_migrations()
        if PG_URL:  # the grants are copied into every database made from the template
            await grant_app_role(engine, APP_ROLE, create=True)
        await db.stop(engine)

    asyncio.run(migrate())
    yield url
    if PG_URL:
        asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}"'))


@pytest.fixture
async def database_url(template_url: str) -> AsyncIterator[str]:
    """A private, fully migrated database for one test."""
    if PG_URL:
        name = f"consentry_t_{uuid.uuid4().hex[:12]}"
        tmpl = template_url.rsplit("/", 1)[1]
        await _pg_admin(f'CREATE DATABASE "{name}" TEMPLATE "{tmpl}"')
        url = as_app_role(f"{PG_URL.rsplit('/', 1)[0]}/{name}")
    else:
        path = _TMP / f"t_{uuid.uuid4().hex[:12]}.sqlite3"
        shutil.copyfile(template_url.removeprefix("sqlite:///"), path)
        url = f"sqlite:///{path}"
    engine = db.set_engine(db.engine_for_url(url))
    await db.start(engine)
    yield url
    await db.stop(engine)
    if PG_URL:
        await _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def settings(database_url: str, key_file: Path, signing_key_file: Path) -> Settings:
    # A home per test: the incremental verifier keeps its record of the last verified head
    # there, and that record belongs to one database.
    home = _TMP / f"home-{uuid.uuid4().hex[:12]}"
    home.mkdir()
    return set_settings(
        Settings(
            home=home,
            database_url=database_url,
            master_key_file=key_file,
            audit_signing_key_file=signing_key_file,
            session_secret="test-session-secret",
            cookie_secure=False,
            # The tests' receivers (webhooks, mail, calendars) listen on loopback.
            outbound_allow=("127.0.0.0/8", "::1/128"),
        )
    )


@pytest.fixture
def services(settings: Settings) -> Services:
    return build_services(settings)


# One Litestar app per distinct web configuration, shared by the tests (see ``app``).
_APPS: dict[tuple[object, ...], Litestar] = {}


@pytest.fixture
def app(settings: Settings, services: Services) -> Litestar:
    """The app for this test, with this test's services.

    Building a Litestar app costs about 0.6 s (every handler is copied and its signature
    parsed, and the template environment starts cold), which over a thousand tests was a
    third of the suite's time. The app keeps nothing per test but ``state.services`` (the
    lifespan, which would start background jobs on a captured engine, never runs here), so
    it is built once per web configuration and handed this test's services. Tests that
    need other settings build their own with ``create_app``.
    """
    key = (settings.cookie_secure, settings.session_secret, settings.log_level, settings.log_json)
    shared = _APPS.get(key)
    if shared is None:
        shared = _APPS[key] = create_app(settings, services)
    else:
        configure_logging(settings.log_level, json=settings.log_json)
    shared.state.services = services
    return shared


def http_client(app: Litestar) -> AsyncClient:
    """An HTTP client calling the app in this test's event loop (no lifespan: the
    ``database_url`` fixture has already started the database)."""
    return AsyncClient(transport=ASGITransport(app=app), base_url="http://testserver")


@pytest.fixture
async def client(app: Litestar) -> AsyncIterator[AsyncClient]:
    async with http_client(app) as test_client:
        yield test_client


class Staff:
    """Creates staff users and logs them in; each gets its own client cookie jar.

    Users whose role requires a second factor (admin, compliance) are enrolled with a
    known TOTP secret, and ``login`` sends a current code, as a real client would.
    """

    def __init__(self, services: Services, app: Litestar) -> None:
        self.services = services
        self.app = app
        self.clients: list[AsyncClient] = []
        self.totp_secrets: dict[int, str] = {}

    async def create(
        self, role: str, team: str = "north", email: str | None = None, *, totp: bool | None = None
    ) -> StaffIdentity:
        address = email or f"{role}.{uuid.uuid4().hex[:8]}@staff.example.com"
        identity, _ = await self.services.accounts.create_user(
            address, role, team=team, password=PASSWORD
        )
        required = self.services.accounts.second_factor_required(role)
        if totp if totp is not None else required:
            await self.enrol_totp(identity)
        return identity

    async def enrol_totp(self, identity: StaffIdentity) -> str:
        """Give a user a TOTP secret directly (the enrolment flow has its own tests)."""
        secret = pyotp.random_base32()
        sealed = self.services.gateway.vault.seal_secret(TOTP_LABEL, str(identity.user_id), secret)
        await StaffUser.update({StaffUser.totp_secret: sealed}).where(
            StaffUser.id == identity.user_id
        )
        self.totp_secrets[identity.user_id] = secret
        return secret

    async def code_for(self, identity: StaffIdentity) -> str:
        """A current code, with the replay guard reset so tests may log in repeatedly."""
        await StaffUser.update({StaffUser.totp_last_step: None}).where(
            StaffUser.id == identity.user_id
        )
        return pyotp.TOTP(self.totp_secrets[identity.user_id]).now()

    def wrong_code_for(self, identity: StaffIdentity) -> str:
        """Six digits that are none of the codes the server accepts now (a step either way,
        and a step more for the clock turning over mid-test)."""
        totp = pyotp.TOTP(self.totp_secrets[identity.user_id])
        now = time.time()
        accepted = {totp.at(now + drift) for drift in (-60, -30, 0, 30, 60)}
        return next(code for code in (f"{i:06d}" for i in range(10)) if code not in accepted)

    def actor(self, identity: StaffIdentity) -> Actor:
        return Actor.staff(identity.user_id, identity.role, identity.team, "test")

    async def login(self, identity: StaffIdentity) -> AsyncClient:
        client = http_client(self.app)
        self.clients.append(client)
        body = {"email": identity.email, "password": PASSWORD}
        if identity.user_id in self.totp_secrets:
            body["totp_code"] = await self.code_for(identity)
        response = await client.post("/api/v1/auth/login", json=body)
        assert response.status_code == 200, response.text
        return client


@pytest.fixture
async def staff(services: Services, app: Litestar) -> AsyncIterator[Staff]:
    helper = Staff(services, app)
    yield helper
    for client in helper.clients:
        await client.aclose()


def contact_values(**overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "first_name": "Grace",
        "last_name": "Hopper",
        "email": f"grace.{uuid.uuid4().hex[:6]}@example.org",
        "phone": "+44 20 7946 0001",
        "job_title": "Rear admiral",
        "birth_date": "1906-12-09",
        "city": "Arlington",
        "country": "US",
        "notes": "Prefers phone calls",
        "lifecycle_stage": "customer",
        "source": "referral",
    }
    values.update(overrides)
    return values
