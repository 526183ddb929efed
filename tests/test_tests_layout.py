"""Tests live beside the package they test (issue 18): ``tests/server/gateway/`` holds the
gateway's tests, ``tests/audit/`` the audit package's, and so on, so whoever changes a
package finds its tests by path and runs them with one argument
(``pytest tests/server/gateway``).

Only checks that cut across every package stay at the top (the code's shape and the import
contracts), next to the shared fixtures; ``tests/browser/`` drives the running product
through Chromium and follows user journeys rather than packages.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / "tests"
# Cross-cutting checks (the code's shape, import contracts, a new field reaching every
# surface) and the fixtures' own smoke test: no single package owns them.
AT_THE_TOP = {
    "test_add_a_field.py",
    "test_code_shape.py",
    "test_import_contract.py",
    "test_smoke_fixture.py",
    "test_tests_layout.py",
}
JOURNEYS = TESTS / "browser"


def misplaced(tests: Path, root: Path) -> list[str]:
    """Test files whose folder does not name a package (or module) of the product."""
    wrong = []
    for path in sorted(tests.rglob("test_*.py")):
        if path.is_relative_to(tests / "browser"):
            continue
        folder = path.parent.relative_to(tests)
        if folder == Path("."):
            if path.name not in AT_THE_TOP:
                wrong.append(path.relative_to(root).as_posix())
            continue
        if not any((root / folder).glob("*.py")):
            wrong.append(path.relative_to(root).as_posix())
    return wrong


def test_every_test_file_sits_beside_its_package() -> None:
    assert misplaced(TESTS, ROOT) == []


def test_every_test_folder_is_a_package() -> None:
    """Without ``__init__.py`` two ``test_service.py`` in different folders would clash."""
    missing = [
        folder.relative_to(ROOT).as_posix()
        for folder in sorted({p.parent for p in TESTS.rglob("test_*.py")})
        if not (folder / "__init__.py").is_file()
    ]
    assert missing == []


def test_the_check_catches_a_flat_or_invented_folder(tmp_path: Path) -> None:
    (tmp_path / "server" / "gateway").mkdir(parents=True)
    (tmp_path / "server" / "gateway" / "core.py").touch()
    tests = tmp_path / "tests"
    (tests / "server" / "gateway").mkdir(parents=True)
    (tests / "server" / "gateway" / "test_read.py").touch()
    assert misplaced(tests, tmp_path) == []
    (tests / "test_flat.py").touch()
    (tests / "server" / "nowhere").mkdir()
    (tests / "server" / "nowhere" / "test_lost.py").touch()
    assert misplaced(tests, tmp_path) == ["tests/server/nowhere/test_lost.py", "tests/test_flat.py"]
