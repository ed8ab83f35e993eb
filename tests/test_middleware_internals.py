"""The middleware behaviour pfscalib.middleware_internals relies on, checked against the pinned versions:
if an upgrade changes it, these tests fail (and say what the job server would lose)."""

from __future__ import annotations

import inspect
import subprocess
import sys


def test_get_python_packages_maps_distributions_through_the_module_global():
    """getPythonPackages calls the module-level name packages_distributions (imported from importlib):
    replacing that name in the job server is what spares each job the map (~0.25 s)."""
    from lsst.utils import packages

    assert callable(getattr(packages, "packages_distributions", None)), (
        "lsst.utils.packages no longer has packages_distributions: the job server's map is not used"
    )
    assert "packages_distributions()" in inspect.getsource(packages.getPythonPackages), (
        "getPythonPackages no longer calls packages_distributions(): the job server's map is not used"
    )


def test_a_remembered_map_gives_the_same_packages_and_is_not_recomputed():
    """In a process like the server: the same `packages` content as the middleware's own lookup, and the
    map is computed once, not per `packages` dataset."""
    code = """
import json
import lsst.daf.butler, lsst.pipe.base
from lsst.utils import packages
from pfscalib.middleware_internals import remember_installed_distributions
before = dict(packages.Packages.fromSystem())
calls = []
real = packages.packages_distributions
packages.packages_distributions = lambda: calls.append(1) or real()
assert remember_installed_distributions()
after = [dict(packages.Packages.fromSystem()) for _ in range(3)]
print(json.dumps({"same": all(a == before for a in after), "n": len(before), "calls": len(calls)}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    import json

    result = json.loads(out.splitlines()[-1])
    assert result["same"] and result["n"] > 10 and result["calls"] == 1, result
