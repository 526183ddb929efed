"""Adding a field (issue 18): one data-map declaration and a generated migration bring
validation, encryption, policy, the API schemas, the admin form, the import's natural key,
the CSV and subject exports, erasure and duplicate matching with them.

The test does what CONTRIBUTING.md's "Add a field" tells a developer to do, on a copy of
the repository: declare a second e-mail address on the contact (encrypted, blind-indexed,
third natural key, duplicate match) and let ``piccolo migrations new crm --auto`` write
the migration (the table takes its columns from the declaration: server/gateway/tables.py).
Then it runs tests/add_a_field/email_2_checks.py in that copy, on this run's engine: every
database of that run is built by the real migrations, the new one included, and each check
goes through the real app. A copy, not a patched process: the data map is read when modules are
imported, and a field added afterwards would reach some surfaces and not others.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COPIED = ("server", "admin_ui", "audit", "policy", "migrations", "tests", "pyproject.toml")
DECLARATION = """
        Field(
            "email_2",
            Category.CONTACT,
            FieldKind.EMAIL,
            "Second e-mail address",
            encrypted=True,
            blind_index=True,
            max_length=254,
            natural_key=3,
            duplicate_match=True,
        ),"""


def insert_after(path: Path, line: int, text: str) -> None:
    lines = path.read_text().splitlines(keepends=True)
    lines.insert(line, text.lstrip("\n") + "\n")
    path.write_text("".join(lines))


def declare_field(tree: Path) -> None:
    """Step 1: the declaration, appended to the contact's ``fields`` where CONTACT is made."""
    for path in sorted((tree / "server").rglob("datamap*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "CONTACT" for t in node.targets
            ):
                assert isinstance(node.value, ast.Call)
                (fields,) = [k.value for k in node.value.keywords if k.arg == "fields"]
                assert isinstance(fields, ast.Tuple)
                last = fields.elts[-1].end_lineno
                assert last is not None
                insert_after(path, last, DECLARATION)
                return
    raise AssertionError("CONTACT = RecordType(...) not found under server/")


def run(tree: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PYTHONPATH": str(tree),
        "PICCOLO_CONF": "server.piccolo_conf",
        "CONSENTRY_HOME": str(tree / ".home"),
    }
    return subprocess.run(  # noqa: S603 - our own interpreter, fixed arguments
        [sys.executable, *args], cwd=tree, env=env, capture_output=True, text=True, timeout=900
    )


def test_a_declared_contact_field_reaches_every_surface(tmp_path: Path) -> None:
    tree = tmp_path / "consentry"
    for name in COPIED:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, tree / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, tree / name)
    declare_field(tree)

    # Step 2: the generated migration adds its two columns and nothing else.
    versions = tree / "migrations" / "crm" / "versions"
    before = set(versions.glob("*.py"))
    new = ("migrations", "new", "crm", "--auto", "--desc=a second e-mail address")
    made = run(tree, "-m", "piccolo.main", *new)
    assert made.returncode == 0, made.stdout + made.stderr
    (migration,) = set(versions.glob("*.py")) - before
    text = migration.read_text()
    assert text.count("manager.add_column(") == 2, text
    assert 'column_name="email_2"' in text
    assert 'column_name="email_2_bidx"' in text
    assert not any(word in text for word in ("drop_", "rename_", "alter_column")), text

    checks = run(
        tree, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider",
        "tests/add_a_field/email_2_checks.py",
    )  # fmt: skip
    assert checks.returncode == 0, checks.stdout[-6000:] + checks.stderr[-2000:]
    assert re.search(r"\b7 passed", checks.stdout), checks.stdout[-2000:]
