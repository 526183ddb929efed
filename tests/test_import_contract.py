"""The import contracts in ``pyproject.toml`` hold - and would catch a leak if one appeared.

A contract that cannot fail proves nothing, so the second half copies the packages into a
temporary directory, adds a module that reaches for a protected table, and checks that
``lint-imports`` then fails and names the contract that was broken.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("server", "policy", "audit", "admin_ui", "migrations")
GATEWAY_CONTRACT = "Only the gateway touches customer tables"
VAULT_CONTRACT = "Only the vault touches subject keys"
VAULT_REACH_CONTRACT = "Only the gateway reaches the vault"
ACYCLIC_CONTRACT = "No import cycles between the packages of server/ (siblings, at every depth)"


def lint_imports(cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    executable = Path(sys.executable).parent / "lint-imports"
    assert executable.exists(), "import-linter is not installed in this venv"
    return subprocess.run(  # noqa: S603 - a fixed argv: this venv's own lint-imports
        [str(executable), "--no-cache", "--no-logo"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def lint_with_module(tmp_path: Path, module: str, source: str) -> subprocess.CompletedProcess[str]:
    """``lint-imports`` on a copy of the packages with one deliberately wrong module added."""
    for package in PACKAGES:
        if (REPO / package).is_dir():
            shutil.copytree(
                REPO / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__")
            )
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    (tmp_path / module).write_text(f'"""Deliberately wrong."""\n\n{source}')
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    return lint_imports(tmp_path, env)


def test_contracts_hold_in_the_repository() -> None:
    result = lint_imports(REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{GATEWAY_CONTRACT} KEPT" in result.stdout
    assert f"{VAULT_CONTRACT} KEPT" in result.stdout
    assert f"{VAULT_REACH_CONTRACT} KEPT" in result.stdout
    assert f"{ACYCLIC_CONTRACT} KEPT" in result.stdout
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "source", "broken", "kept"),
    [
        (
            "server/contacts/leak.py",
            "from server.gateway.tables import Contact\n",
            GATEWAY_CONTRACT,
            VAULT_CONTRACT,
        ),
        (
            "server/auth/leak.py",
            "def sneaky() -> object:\n"
            "    from server.gateway import tables  # hidden in a function: still caught\n\n"
            "    return tables.Contact\n",
            GATEWAY_CONTRACT,
            VAULT_CONTRACT,
        ),
        (
            # The command line may use the vault (key files), never its key tables.
            "server/cli/leak.py",
            "import server.vault.tables\n",
            VAULT_CONTRACT,
            GATEWAY_CONTRACT,
        ),
        (
            # An admin page sealing with the vault itself instead of asking the gateway.
            "admin_ui/pages/leak.py",
            "from server.vault import Vault\n",
            VAULT_REACH_CONTRACT,
            VAULT_CONTRACT,
        ),
        (
            "server/dsr/leak.py",
            "from server.vault.keys import derive_key\n",
            VAULT_REACH_CONTRACT,
            GATEWAY_CONTRACT,
        ),
    ],
)
def test_a_leaking_import_breaks_the_contract(
    tmp_path: Path, module: str, source: str, broken: str, kept: str
) -> None:
    result = lint_with_module(tmp_path, module, source)

    assert result.returncode != 0, result.stdout + result.stderr
    assert f"{broken} BROKEN" in result.stdout
    assert f"{kept} KEPT" in result.stdout
    leak = module.removesuffix(".py").replace("/", ".")
    assert leak in result.stdout  # the report names the offending module
    assert "1 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "source", "cut"),
    [
        (
            # Analytics names the consent engine by a Protocol: importing it back, even
            # only for a type hint, closes a cycle (consent deletes scores).
            "server/analytics/leak.py",
            "from typing import TYPE_CHECKING\n\n"
            "if TYPE_CHECKING:\n"
            "    from server.consent.service import ConsentEngine\n",
            {"- .analytics -> .consent", "- .consent -> .analytics"},
        ),
        (
            # The recipients' notices build on the webhook tables; a late import back.
            "server/webhooks/leak.py",
            "def late() -> object:\n"
            "    from server.recipients import notices\n\n"
            "    return notices\n",
            {"- .webhooks -> .recipients", "- .recipients -> .webhooks"},
        ),
    ],
)
def test_an_import_cycle_breaks_the_acyclic_contract(
    tmp_path: Path, module: str, source: str, cut: set[str]
) -> None:
    result = lint_with_module(tmp_path, module, source)

    assert result.returncode != 0, result.stdout + result.stderr
    assert f"{ACYCLIC_CONTRACT} BROKEN" in result.stdout
    assert "No cycles are allowed in server." in result.stdout
    assert any(edge in result.stdout for edge in cut), result.stdout  # names where to cut
    assert "1 broken" in result.stdout
