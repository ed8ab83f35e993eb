"""Shared fixtures: the demo repository is built once per session and copied per test."""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from lsst.daf.butler import Butler, CollectionType

PROJECT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
# Jobs call pfscalib/pipetask/butler: the venv's bin must come first on PATH.
os.environ["PATH"] = f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"
TEST_CAMERAS = ("b1", "r1", "b2")


def run(cmd: list[str] | str, cwd: Path | str = PROJECT, check: bool = False, **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        cmd,
        cwd=cwd,
        capture_output=True,
        text=True,
        shell=isinstance(cmd, str),
        executable="/bin/bash" if isinstance(cmd, str) else None,
        **kw,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"{cmd} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc


DEMO_INSTRUMENT = "pfscalib.demo.instrument.PrimeFocusSpectrograph"
DEMO_PIPELINES = PROJECT / "scripts/pfscalib/demo/pipelines"


def pipetask_run(repo: Path, inputs: str, output: str, pipeline: str, where: str, *overrides: str, env=None):
    """One `pipetask run` of a demo pipeline, by hand as a user types it (-j 1, --fail-fast)."""
    argv = ["pipetask", "run", "--register-dataset-types", "-j", "1", "-b", str(repo)]
    argv += ["--instrument", DEMO_INSTRUMENT, "-i", inputs, "-o", output, "-p", str(DEMO_PIPELINES / pipeline)]
    argv += ["-d", where, "--fail-fast"]
    for override in overrides:
        argv += ["-c", override]
    return run(argv, env=env)


def built_template(tmp_path_factory, name: str, cameras: tuple[str, ...], **options) -> Path:
    """A demo repository built once per session (copied per test: a SQLite repo is a directory)."""
    from pfscalib.demo.make_repo import make_repo

    root = tmp_path_factory.mktemp(name) / "repo"
    make_repo(root, cameras, **options)
    return root


def private_copy(tmp_path: Path, template: Path) -> Path:
    root = tmp_path / "repo"
    shutil.copytree(template, root)
    return root


@pytest.fixture(scope="session")
def demo_template(tmp_path_factory) -> Path:
    """The demo repository in the current layout (a Subaru datastore today)."""
    return built_template(tmp_path_factory, "template", TEST_CAMERAS)


@pytest.fixture(scope="session")
def legacy_template(tmp_path_factory) -> Path:
    """The demo repository in the legacy layout (PFS/raw/all, CALIBRATION PFS/calib), for the guide's commands."""
    return built_template(tmp_path_factory, "legacy_template", TEST_CAMERAS, layout="legacy")


@pytest.fixture(scope="session")
def nir_template(tmp_path_factory) -> Path:
    """A small demo repository with an n and an m camera beside b1 (the session template has neither), both
    epochs: run1's n ramps at IRP ratio 1, run2's at 4."""
    return built_template(tmp_path_factory, "nir_template", ("b1", "n1", "m1"))


@pytest.fixture
def demo_repo(tmp_path, demo_template) -> Path:
    """A private copy of the current-layout repository."""
    return private_copy(tmp_path, demo_template)


@pytest.fixture
def legacy_repo(tmp_path, legacy_template) -> Path:
    """A private copy of the legacy-layout repository."""
    return private_copy(tmp_path, legacy_template)


@pytest.fixture
def nir_repo(tmp_path, nir_template) -> Path:
    """A private copy of the n+m repository."""
    return private_copy(tmp_path, nir_template)


def require_root(what: str) -> None:
    """Server tests install and start real daemons: they must run in CI (root), and skip with the
    reason for a non-root user."""
    if os.geteuid() != 0:
        if os.environ.get("CI"):
            pytest.fail(f"{what} tests must run in CI, which is root")
        pytest.skip(f"{what} tests install and start real daemons and need root (CI runs them as root)")


@pytest.fixture(scope="module")
def postgres_url():
    """A private PostgreSQL server for the test module (tests/postgres/server.sh; installed and started on
    demand, root only), on a free port: modules on other pytest workers run their own."""
    import socket
    import tempfile

    require_root("PostgreSQL")
    directory = Path(tempfile.mkdtemp(prefix="pfscalib-pg-"))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    script = PROJECT / "tests/postgres/server.sh"
    started = run(["bash", str(script), "start", str(directory), str(port)], check=True)
    yield started.stdout.strip().splitlines()[-1]
    run(["bash", str(script), "stop", str(directory)], check=True)


def outside_dump(repo: Path, rerun: str = "u/demo") -> dict:
    """Every collection outside the build's own (not under the rerun): chain definitions and every
    certification (type, data ID, dataset id, range) of every CALIBRATION collection; sorted lists, so that
    it compares equal as JSON too."""
    butler = Butler.from_config(str(repo))
    calib_types = [t for t in butler.registry.queryDatasetTypes() if t.isCalibration()]
    out: dict = {}
    for info in butler.collections.query_info("*"):
        if info.name.startswith(f"{rerun}/"):
            continue
        if info.type is CollectionType.CHAINED:
            out[info.name] = ["CHAINED", list(info.children)]
        elif info.type is CollectionType.CALIBRATION:
            certs = set()
            for dataset_type in calib_types:
                for a in butler.registry.queryDatasetAssociations(dataset_type, collections=info.name):
                    certs.add((dataset_type.name, str(a.ref.dataId.required), str(a.ref.id), str(a.timespan)))
            out[info.name] = ["CALIBRATION", sorted(certs)]
        else:
            out[info.name] = [info.type.name]
    return out


# `make test` runs three pytest-xdist workers on the two cores with --dist loadscope: a module's tests stay on
# one worker, so its module-scoped fixtures (a whole demo run, a fault run) are built once; the third worker
# fills the time the others wait (SLURM dispatch and status checks, the twin's sleeps, signal waits). The
# longest modules go first (by the module times of a clean-clone run, 2026-12-07), so that the workers finish
# together; --no-loadscope-reorder keeps this order (xdist would otherwise start with the modules that have
# the most tests, leaving the few long ones to the end). (The daemon scripts serialise their apt installs.)
LONGEST_FIRST = ["test_workflow_e2e", "test_slurm", "test_reliability", "test_random_kill", "test_cameras",
                 "test_bad_input", "test_offsets", "test_databases", "test_signals",
                 "test_seed_sequence", "test_quality_gate", "test_promote_safety", "test_verdicts",
                 "test_site_collections", "test_forced_rebuild", "test_recovery", "test_profiles_run",
                 "test_corpus", "test_snakemake_internals", "test_demo_layout", "test_site_checks"]  # fmt: skip


CPU_AT = pytest.StashKey[float]()


def cpu_seconds() -> float:
    """CPU of this worker and of every process it has waited for (snakemake, its jobs, their pipetask)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    item.stash[CPU_AT] = cpu_seconds()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Each test's CPU seconds (module fixtures in the test that first needs them) as a JUnit property
    `cpu_s`: on two cores the suite's wall follows its CPU, which is what to trim when it grows."""
    outcome = yield
    if call.when == "teardown" and CPU_AT in item.stash:
        outcome.get_result().user_properties.append(("cpu_s", f"{cpu_seconds() - item.stash[CPU_AT]:.1f}"))


def pytest_collection_modifyitems(config, items):
    def rank(item) -> int:
        module = item.module.__name__
        return LONGEST_FIRST.index(module) if module in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: each module keeps its own order
