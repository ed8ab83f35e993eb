"""The one place the workflow leans on the middleware's internals, for speed only.

tests/test_middleware_internals.py fails when a pinned version changes what is used here; everything here
degrades to the middleware's own behaviour when the internal is not found.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def remember_installed_distributions() -> bool:
    """Every `pipetask run` writes its RUN's `packages` dataset through lsst.utils.packages.getPythonPackages,
    which maps every import name to its distributions on each call (importlib's packages_distributions():
    ~0.25 s of CPU, reading every installed distribution's RECORD). In the job server the map is computed
    once: its children run the code the server imported, so the distributions installed when it started
    are the ones they run. The versions themselves are still looked up by each job. False: not found."""
    try:
        from lsst.utils import packages
    except ImportError:
        return False
    lookup = getattr(packages, "packages_distributions", None)
    if not callable(lookup):
        log.warning("lsst.utils.packages has no packages_distributions: every job maps distributions itself")
        return False
    table = lookup()

    def packages_distributions() -> dict[str, list[str]]:
        return {name: list(dists) for name, dists in table.items()}  # a copy: callers own their result

    packages.packages_distributions = packages_distributions
    return True
