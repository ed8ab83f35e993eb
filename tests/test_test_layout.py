"""Issue #30: the tests' own layout. A test module imports only the shared helper modules (conftest, helpers,
killtrials, reportcheck), never another test module: shared code lives in helpers.py, fixtures in conftest.py."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, at any depth (imports inside functions count too)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_no_module_under_tests_imports_a_test_module():
    offenders = {
        path.name: sorted(m for m in imported_modules(path) if m.startswith("test_"))
        for path in sorted(TESTS.glob("*.py"))
    }
    assert {name: mods for name, mods in offenders.items() if mods} == {}


def test_the_walk_sees_both_import_forms(tmp_path):
    """The check itself: `from test_x import y` and `import test_x` (nested in a function) are both seen."""
    module = tmp_path / "m.py"
    module.write_text("from test_a import b\n\ndef f():\n    import test_c\n    from helpers import d\n")
    assert imported_modules(module) == {"test_a", "test_c", "helpers"}


def test_report_pictures_unchecked_in_ci_fail_instead_of_skipping(monkeypatch):
    """reportcheck.chromium: without Chromium and without root to install it, a developer's run skips the
    picture checks, CI's fails (CI=true)."""
    import pytest

    import reportcheck

    monkeypatch.setattr(reportcheck.shutil, "which", lambda name: None)
    monkeypatch.setattr(reportcheck.os, "geteuid", lambda: 1000)
    outcomes = []
    for ci in (None, "true"):  # caught as BaseException: a skip must not escape and skip this test itself
        if ci is None:
            monkeypatch.delenv("CI", raising=False)
        else:
            monkeypatch.setenv("CI", ci)
        with pytest.raises(BaseException) as raised:
            reportcheck.chromium()
        outcomes.append(raised.type)
    assert outcomes == [pytest.skip.Exception, pytest.fail.Exception]
