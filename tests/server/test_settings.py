"""Settings from CONSENTRY_* variables, and building the services from them.

No database is opened: ``build_services`` only loads keys and secrets and wires objects.
"""

from __future__ import annotations

import base64
import json
import os
import stat
from decimal import Decimal
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from audit.signing import load_signing_key, write_signing_key
from server.services import build_services, load_key_provider, load_session_secret
from server.settings import DEMO_CONTROLLER_NAME, ConfigurationError, Settings
from server.vault import EnvKeyProvider, FileKeyProvider, write_key_file

MASTER_KEY = base64.b64encode(bytes(range(32))).decode()

# --- defaults -------------------------------------------------------------------------------


def test_defaults() -> None:
    settings = Settings()
    assert settings.home == Path("consentry-data")
    assert settings.resolved_database_url == "sqlite:///consentry-data/consentry.sqlite3"
    assert not settings.is_postgres
    assert settings.resolved_master_key_file == Path("consentry-data") / "master.key"
    assert settings.session_secret_file == Path("consentry-data") / "session.secret"
    assert settings.demo is False
    assert settings.cookie_secure is True
    assert settings.session_idle_minutes == 60
    assert settings.session_absolute_hours == 12
    assert settings.default_phone_region == "GB"
    assert settings.log_level == "INFO"
    assert settings.log_json is True
    assert settings.master_key_env is None
    assert settings.session_secret is None


def test_empty_environment_gives_the_defaults() -> None:
    # conftest.py sets CONSENTRY_HOME etc. in os.environ: an explicit mapping ignores them.
    assert Settings.from_env({}) == Settings()


def test_empty_values_count_as_unset() -> None:
    env = {
        f"CONSENTRY_{name}": ""
        for name in (
            "HOME",
            "DATABASE_URL",
            "MASTER_KEY_FILE",
            "MASTER_KEY",
            "SESSION_SECRET",
            "DEMO",
            "COOKIE_SECURE",
            "SESSION_IDLE_MINUTES",
            "SESSION_ABSOLUTE_HOURS",
            "PHONE_REGION",
            "LOG_LEVEL",
            "LOG_JSON",
        )
    }
    assert Settings.from_env(env) == Settings()


def test_process_environment_is_read_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONSENTRY_PHONE_REGION", "fr")
    monkeypatch.setenv("CONSENTRY_SESSION_IDLE_MINUTES", "5")
    settings = Settings.from_env()
    assert settings.default_phone_region == "FR"
    assert settings.session_idle_minutes == 5
    assert settings.home == Path(os.environ["CONSENTRY_HOME"])


def test_sqlite_database_lives_in_the_home_directory(tmp_path: Path) -> None:
    settings = Settings.from_env({"CONSENTRY_HOME": str(tmp_path)})
    assert settings.resolved_database_url == f"sqlite:///{tmp_path / 'consentry.sqlite3'}"
    assert settings.resolved_master_key_file == tmp_path / "master.key"
    assert settings.session_secret_file == tmp_path / "session.secret"


# --- environment parsing ----------------------------------------------------------------------


def test_every_variable_is_read() -> None:
    settings = Settings.from_env(
        {
            "CONSENTRY_HOME": "/srv/consentry",
            "CONSENTRY_DATABASE_URL": "postgresql://app@db.internal/crm",
            "CONSENTRY_MASTER_KEY_FILE": "/run/secrets/master.key",
            "CONSENTRY_MASTER_KEY": MASTER_KEY,
            "CONSENTRY_SESSION_SECRET": "s3ssion-secret",
            "CONSENTRY_DEMO": "yes",
            "CONSENTRY_COOKIE_SECURE": "false",
            "CONSENTRY_SESSION_IDLE_MINUTES": "15",
            "CONSENTRY_SESSION_ABSOLUTE_HOURS": "8",
            "CONSENTRY_PHONE_REGION": "de",
            "CONSENTRY_LOG_LEVEL": "debug",
            "CONSENTRY_LOG_JSON": "0",
            "UNRELATED": "ignored",
        }
    )
    assert settings == Settings(
        home=Path("/srv/consentry"),
        database_url="postgresql://app@db.internal/crm",
        master_key_file=Path("/run/secrets/master.key"),
        master_key_env=MASTER_KEY,
        session_secret="s3ssion-secret",
        demo=True,
        cookie_secure=False,
        session_idle_minutes=15,
        session_absolute_hours=8,
        default_phone_region="DE",
        log_level="DEBUG",
        log_json=False,
        controller_name=DEMO_CONTROLLER_NAME,  # demo mode names a demo controller
        controller_contact="privacy@demo.example",
        score_rates=(("GBP", Decimal("1.17")), ("USD", Decimal("0.92"))),  # demo rates
    )
    assert settings.resolved_database_url == "postgresql://app@db.internal/crm"
    assert settings.is_postgres
    assert settings.resolved_master_key_file == Path("/run/secrets/master.key")


@pytest.mark.parametrize("url", ["postgresql://u@h/db", "postgres://u@h/db"])
def test_postgres_urls_are_recognised(url: str) -> None:
    assert Settings(database_url=url).is_postgres


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1", True),
        ("true", True),
        ("TRUE", True),
        (" yes ", True),
        ("on", True),
        ("0", False),
        ("false", False),
        ("No", False),
        ("off", False),
    ],
)
def test_boolean_spellings(text: str, expected: bool) -> None:
    settings = Settings.from_env(
        {"CONSENTRY_DEMO": text, "CONSENTRY_COOKIE_SECURE": text, "CONSENTRY_LOG_JSON": text}
    )
    assert settings.demo is expected
    assert settings.cookie_secure is expected
    assert settings.log_json is expected


@pytest.mark.parametrize("name", ["DEMO", "COOKIE_SECURE", "LOG_JSON"])
@pytest.mark.parametrize("text", ["maybe", "2", "enabled"])
def test_bad_boolean_is_a_configuration_error(name: str, text: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        Settings.from_env({f"CONSENTRY_{name}": text})
    message = str(caught.value)
    assert f"CONSENTRY_{name}" in message  # which variable to fix ...
    assert "true/false" in message  # ... and what it should look like


@pytest.mark.parametrize("name", ["SESSION_IDLE_MINUTES", "SESSION_ABSOLUTE_HOURS"])
@pytest.mark.parametrize("text", ["ten", "1.5", "60m"])
def test_bad_integer_is_a_configuration_error(name: str, text: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        Settings.from_env({f"CONSENTRY_{name}": text})
    assert f"CONSENTRY_{name}" in str(caught.value)
    assert "whole number" in str(caught.value)


@pytest.mark.parametrize("name", ["SESSION_IDLE_MINUTES", "SESSION_ABSOLUTE_HOURS"])
@pytest.mark.parametrize("text", ["0", "-5"])
def test_session_timeouts_below_one_are_refused(name: str, text: str) -> None:
    """A zero or negative timeout would silently end every session at once."""
    with pytest.raises(ConfigurationError) as caught:
        Settings.from_env({f"CONSENTRY_{name}": text})
    assert f"CONSENTRY_{name}" in str(caught.value)
    assert "at least 1" in str(caught.value)


def test_secrets_do_not_appear_in_repr() -> None:
    settings = Settings(master_key_env=MASTER_KEY, session_secret="s3ssion-secret")
    assert MASTER_KEY not in repr(settings)
    assert "s3ssion-secret" not in repr(settings)


def test_with_overrides_returns_a_changed_copy() -> None:
    settings = Settings()
    changed = settings.with_overrides(demo=True, log_level="WARNING")
    assert (changed.demo, changed.log_level) == (True, "WARNING")
    assert (settings.demo, settings.log_level) == (False, "INFO")


# --- building the services --------------------------------------------------------------------


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_missing_key_file_outside_demo_tells_the_user_what_to_run(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", session_secret="s")
    with pytest.raises(ConfigurationError) as caught:
        build_services(settings)
    assert "consentry keys init" in str(caught.value)
    # Outside demo mode nothing is invented behind the operator's back.
    assert not settings.resolved_master_key_file.exists()
    assert not settings.session_secret_file.exists()


def test_missing_session_secret_outside_demo_is_a_configuration_error(tmp_path: Path) -> None:
    home = tmp_path / "home"
    write_key_file(home / "master.key")
    with pytest.raises(ConfigurationError) as caught:
        build_services(Settings(home=home))
    assert "CONSENTRY_SESSION_SECRET" in str(caught.value)
    assert "consentry keys init" in str(caught.value)


def test_readable_key_file_is_a_configuration_error(tmp_path: Path) -> None:
    home = tmp_path / "home"
    write_key_file(home / "master.key")
    (home / "master.key").chmod(0o644)
    with pytest.raises(ConfigurationError, match="chmod 600"):
        build_services(Settings(home=home, session_secret="s"))


def test_demo_mode_creates_owner_only_key_and_session_secret(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", demo=True)
    services = build_services(settings)
    assert services.settings is settings
    key_file = settings.resolved_master_key_file
    secret_file = settings.session_secret_file
    assert key_file.exists()
    assert _mode(key_file) == 0o600
    assert isinstance(FileKeyProvider(key_file), FileKeyProvider)
    assert secret_file.exists()
    assert _mode(secret_file) == 0o600
    assert len(secret_file.read_text().strip()) >= 32
    assert _mode(settings.resolved_audit_signing_key_file) == 0o600


def test_demo_mode_reuses_existing_keys_on_restart(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", demo=True)
    build_services(settings)
    key_before = settings.resolved_master_key_file.read_bytes()
    secret_before = settings.session_secret_file.read_bytes()
    build_services(settings)
    # Regenerating the key would make every encrypted field unreadable.
    assert settings.resolved_master_key_file.read_bytes() == key_before
    assert settings.session_secret_file.read_bytes() == secret_before
    assert load_session_secret(settings) == secret_before.strip()


def test_explicit_key_file_location_is_used(tmp_path: Path) -> None:
    key_file = tmp_path / "secrets" / "consentry.key"
    write_key_file(key_file)
    signing_key = tmp_path / "secrets" / "audit.key"
    write_signing_key(signing_key)
    settings = Settings(
        home=tmp_path / "home",
        master_key_file=key_file,
        audit_signing_key_file=signing_key,
        session_secret="s",
    )
    provider = load_key_provider(settings)
    assert isinstance(provider, FileKeyProvider)
    assert provider.active_kek() == FileKeyProvider(key_file).active_kek()
    services = build_services(settings)
    assert not (tmp_path / "home" / "master.key").exists()
    assert not (tmp_path / "home" / "audit-signing.key").exists()
    assert services.audit_trail.key_id == load_signing_key(signing_key).key_id


def test_the_audit_signing_key_is_required_private_and_never_printed(tmp_path: Path) -> None:
    key_file = tmp_path / "master.key"
    write_key_file(key_file)
    settings = Settings(home=tmp_path / "home", master_key_file=key_file, session_secret="s")
    with pytest.raises(ConfigurationError, match="consentry keys init"):
        build_services(settings)
    signing_key = settings.resolved_audit_signing_key_file
    write_signing_key(signing_key)
    assert _mode(signing_key) == 0o600
    with pytest.raises(FileExistsError):
        write_signing_key(signing_key)  # never overwritten: old heads were signed with it
    signing_key.chmod(0o644)
    with pytest.raises(ConfigurationError, match="readable by others") as refused:
        build_services(settings)
    secret = json.loads(signing_key.read_text())["ed25519"]
    assert secret not in str(refused.value)
    signing_key.chmod(0o600)
    from_file = build_services(settings).audit_trail
    from_env = build_services(
        settings.with_overrides(audit_signing_key_env=secret, home=tmp_path / "elsewhere")
    ).audit_trail
    assert from_env.key_id == from_file.key_id
    with pytest.raises(ConfigurationError, match="not an Ed25519 private key"):
        build_services(settings.with_overrides(audit_signing_key_env="bm90IGEga2V5"))


def test_master_key_from_the_environment_needs_no_file(tmp_path: Path) -> None:
    home = tmp_path / "home"
    settings = Settings.from_env(
        {
            "CONSENTRY_HOME": str(home),
            "CONSENTRY_MASTER_KEY": MASTER_KEY,
            "CONSENTRY_AUDIT_SIGNING_KEY": base64.b64encode(
                Ed25519PrivateKey.generate().private_bytes_raw()
            ).decode(),
            "CONSENTRY_SESSION_SECRET": "s3ssion-secret",
        }
    )
    provider = load_key_provider(settings)
    assert isinstance(provider, EnvKeyProvider)
    assert provider.active_kek() == EnvKeyProvider(MASTER_KEY).active_kek()
    services = build_services(settings)
    assert services.settings is settings
    assert load_session_secret(settings) == b"s3ssion-secret"
    assert not home.exists() or not any(home.iterdir())


def test_environment_key_wins_over_demo_key_file(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", demo=True, master_key_env=MASTER_KEY)
    assert isinstance(load_key_provider(settings), EnvKeyProvider)
    assert not settings.resolved_master_key_file.exists()


@pytest.mark.parametrize(
    "secret",
    ["not base64!", base64.b64encode(os.urandom(16)).decode()],
    ids=["not-base64", "too-short"],
)
def test_bad_environment_key_is_a_configuration_error(tmp_path: Path, secret: str) -> None:
    settings = Settings(home=tmp_path / "home", master_key_env=secret, session_secret="s")
    with pytest.raises(ConfigurationError) as caught:
        build_services(settings)
    message = str(caught.value)
    assert "CONSENTRY_MASTER_KEY" in message
    assert secret not in message
