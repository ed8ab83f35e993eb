"""The package shows where its code runs (issue 30): `plan/` runs inside Snakemake's process and never imports
the middleware; `job/` runs inside one job; `tools/` are the commands a person types; `internals/` the only
places that rely on Snakemake's or the middleware's internals. No import cycle anywhere in the package."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

from helpers import PROJECT

PACKAGE = PROJECT / "scripts" / "pfscalib"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Every module the file imports, at any level (module top or inside a function)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.add(node.module)
            out |= {f"{node.module}.{a.name}" for a in node.names}  # from pfscalib.plan import paths
        elif isinstance(node, ast.ImportFrom):
            raise AssertionError(f"{path}: a relative import (the package imports by absolute names)")
    return out


def package_graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py") if "demo" not in p.parts}
    return {name: {m for m in imports(path) if m in modules and m != name} for name, path in modules.items()}


def test_the_plan_side_never_imports_the_middleware():
    plan = {m: deps for m, deps in package_graph().items() if m.startswith("pfscalib.plan")}
    assert len(plan) >= 10
    for name in plan:
        path = PACKAGE / Path(*name.split(".")[1:]).with_suffix(".py")
        if not path.exists():
            path = PACKAGE / Path(*name.split(".")[1:]) / "__init__.py"
        lsst = sorted(m for m in imports(path) if m.split(".")[0] == "lsst")
        assert not lsst, f"{name} imports {lsst}"
        other_side = sorted(m for m in plan[name] if not m.startswith("pfscalib.plan"))
        assert not other_side, f"{name} (inside Snakemake) imports {other_side}"


def test_importing_the_plan_side_and_the_snakefiles_imports_loads_no_lsst_module():
    plan = sorted(m for m in package_graph() if m.startswith("pfscalib.plan"))
    # what the Snakefile's rules import, in Snakemake's own process
    rules = "\n".join(p.read_text() for p in [PROJECT / "Snakefile", *sorted((PROJECT / "rules").glob("*.smk"))])
    wired = sorted(set(re.findall(r"^\s*from (pfscalib[\w.]*) import", rules, re.M)))
    assert "pfscalib.plan.workflow" in plan and "pfscalib.plan.preflight" in wired + plan
    code = f"import importlib, sys\nfor m in {plan + wired!r}: importlib.import_module(m)\n"
    code += "print(sorted(m for m in sys.modules if m.split('.')[0] == 'lsst'))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]", f"importing the plan side loaded {loaded.strip()}"
    assert all(m.startswith(("pfscalib.plan", "pfscalib.internals.snakemake")) for m in wired), wired


def test_no_import_cycle_in_the_package():
    graph = package_graph()
    assert {"pfscalib.plan.config", "pfscalib.job.run", "pfscalib.tools.promote"} <= set(graph)
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(name: str, path: list[str]) -> None:
        state[name] = 1
        for dep in sorted(graph[name]):
            assert state.get(dep) != 1, "import cycle: " + " -> ".join([*path, name, dep])
            if dep not in state:
                visit(dep, [*path, name])
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [])


def test_the_walk_sees_a_cycle_and_a_middleware_import(tmp_path, monkeypatch):
    """The checks above fail when the shape breaks: a planted cycle and a planted lsst import are found."""
    fake = tmp_path / "pfscalib"
    (fake / "plan").mkdir(parents=True)
    (fake / "plan" / "a.py").write_text("def f():\n    from pfscalib.plan.b import g\n")
    (fake / "plan" / "b.py").write_text("from pfscalib.plan import a\n\ndef g():\n    import lsst.daf.butler\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", fake)
    graph = package_graph()
    assert graph["pfscalib.plan.a"] == {"pfscalib.plan.b"} and "pfscalib.plan.a" in graph["pfscalib.plan.b"]
    assert "lsst.daf.butler" in imports(fake / "plan" / "b.py")
