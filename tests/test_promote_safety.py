"""Issue #29, promotion: a chain is changed only by a compare-and-set (a promotion prepends only to the
definition its record holds, a rollback restores only from the promoted one), a second promotion or
rollback at the same time refuses in one line, a stale record is refused in one line when resumed, and
`--ticket` / `--tag` / `--chain` are checked as collection-name parts before the repository is touched."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest
from lsst.daf.butler import Butler, CollectionType

from pfscalib.demo.make_repo import make_repo

from conftest import run
from helpers import RUN1, external_repo_config, snakemake, workdir_config

CHAIN = "PFS/calib"
BIAS = "results/certified/run1/bias/b1.json"
OTHER = "PFS/calib/observatory/bias.20260101a"


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, Path]:
    """b1's bias of run1 built (one camera, one epoch) on a demo site whose PFS/calib is a CHAINED one."""
    tmp = tmp_path_factory.mktemp("promote-safety")
    make_repo(tmp / "repo", ("b1",), RUN1)
    workdir = workdir_config(tmp / "wd", cameras=["b1"], epochs=("run1",))
    external_repo_config(workdir, str(tmp / "repo"), ["b1"])
    snakemake(workdir, BIAS, mtime_only=True)
    return workdir, tmp / "repo"


@pytest.fixture
def site(tmp_path, built) -> tuple[Path, Path]:
    """A private copy of the built work directory and its repository."""
    workdir, repo = tmp_path / "wd", tmp_path / "repo"
    shutil.copytree(built[1], repo)
    shutil.copytree(built[0], workdir, symlinks=True)
    external_repo_config(workdir, str(repo), ["b1"])
    return workdir, repo


def promote_argv(*args: str) -> list[str]:
    return ["pfscalib", "promote", "--ticket", "PIPE2D-1", "--tag", "test", "--steps", "bias", "--cameras", "b1", *args]


def promote(workdir: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return run(promote_argv(*args), cwd=workdir, env=env)


def killed_at(workdir: Path, point: str, *args: str) -> Path:
    """A promotion killed at a fault point (its record left "prepared"); returns the record."""
    env = {**os.environ, "PFSCALIB_FAULT": point, "PFSCALIB_FAULT_DIR": str(workdir / f"faults-{point}")}
    before = set((workdir / "results/promotions").glob("*.json"))
    killed = promote(workdir, *args, env=env)
    assert killed.returncode != 0 and "injected fault" in killed.stderr, killed.stderr
    (record,) = set((workdir / "results/promotions").glob("*.json")) - before
    return record


def errors(proc: subprocess.CompletedProcess) -> list[str]:
    return [ln for ln in proc.stderr.splitlines() if ln.startswith(("pfscalib: promote:", "pfscalib: rollback:"))]


def chain(repo: Path) -> list[str]:
    return list(Butler.from_config(str(repo)).collections.get_info(CHAIN).children)


def collections(repo: Path) -> list[tuple[str, str, tuple[str, ...]]]:
    butler = Butler.from_config(str(repo))
    return sorted((i.name, i.type.name, tuple(i.children)) for i in butler.collections.query_info("*"))


def records(workdir: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((workdir / "results/promotions").glob("*.json"))]


def prepend_other(repo: Path, position: int = 0) -> list[str]:
    """A calibration manager's own CALIBRATION collection put into PFS/calib by hand; returns the chain."""
    butler = Butler.from_config(str(repo), writeable=True)
    butler.collections.register(OTHER, CollectionType.CALIBRATION)
    children = list(butler.collections.get_info(CHAIN).children)
    butler.collections.redefine_chain(CHAIN, [*children[:position], OTHER, *children[position:]])
    return chain(repo)


def test_a_second_promotion_at_the_same_time_refuses_in_one_line(site):
    workdir, repo = site
    old, before = chain(repo), collections(repo)
    # another promotion holds the chain's lock (this process, as `pfscalib promote` holds it)
    lock = workdir / "results/promotions/PFS+calib.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.write(fd, json.dumps({"pid": os.getpid(), "started": "2026-12-07T03:00:00+00:00"}).encode())
        refused = promote(workdir)
        assert refused.returncode == 1, refused.stderr
        assert errors(refused) == [
            f"pfscalib: promote: {CHAIN}: another promotion or rollback is running (pid {os.getpid()}, started at "
            "2026-12-07T03:00:00+00:00); retry when it has finished"
        ]
        assert "Traceback" not in refused.stderr
        assert chain(repo) == old and collections(repo) == before and records(workdir) == []
    finally:
        os.close(fd)
    # two real promotions started at once: exactly one wins, the other refuses in one line
    procs = [subprocess.Popen(promote_argv(), cwd=workdir, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(p.communicate()[1], p.returncode) for p in procs]
    assert sorted(rc == 0 for _, rc in results) == [False, True], results
    stderr = next(err for err, rc in results if rc != 0)
    lines = [ln for ln in stderr.splitlines() if ln.startswith("pfscalib: promote:")]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    # refused at the lock or, had the winner finished first, as already promoted
    assert "another promotion or rollback is running" in lines[0] or "already certified in PFS/calib" in lines[0]
    (winner,) = [r for r in records(workdir) if r["status"] == "done"]
    assert winner["previous"] == old
    assert chain(repo) == [*winner["collections"].values(), *old]  # exactly the winner's prepend
    # a rollback while another holds the lock refuses too, and changes nothing
    fd = os.open(lock, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        promoted = chain(repo)
        proc = run(["pfscalib", "rollback", "--repo", str(repo), winner["path"]], cwd=workdir)
        assert proc.returncode == 1 and len(errors(proc)) == 1 and "is running" in errors(proc)[0], proc.stderr
        assert chain(repo) == promoted
    finally:
        os.close(fd)


def test_a_chain_changed_before_the_prepend_refuses_and_changes_nothing(site, monkeypatch):
    """The chain edited between the record's writing and the prepend (at the promote-certify fault hook):
    the compare-and-set finds another definition and refuses in one line; the chain keeps the edit."""
    from pfscalib.plan.preflight import load
    from pfscalib.tools import promote as promotion

    workdir, repo = site
    monkeypatch.chdir(workdir)
    edited = []

    def hook(point, job):
        def edit():
            if point == "promote-certify":
                edited.extend(prepend_other(repo))

        return edit

    monkeypatch.setattr(promotion, "fault_hook", hook)
    wf = load(["config/config.yaml"])
    with pytest.raises(promotion.PromotionError) as refused:
        promotion.promote(wf, CHAIN, "PIPE2D-1", "test", ["bias"], ["b1"], [])
    message = str(refused.value)
    assert "\n" not in message and message.startswith(f"{CHAIN} changed since results/promotions/")
    (record,) = records(workdir)
    assert f"expected [{', '.join(record['previous'])}], found [{', '.join(edited)}]" in message
    assert chain(repo) == edited == [OTHER, *record["previous"]]  # nothing prepended
    assert record["status"] == "refused"


def test_a_resumed_promotion_and_a_rollback_refuse_a_changed_chain(site):
    workdir, repo = site
    # an interrupted promotion, the chain edited by hand since: resuming it refuses in one line
    record = killed_at(workdir, "promote-certify")
    edited = prepend_other(repo)
    proc = promote(workdir)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    (line,) = errors(proc)
    assert f"{CHAIN} changed since {record.relative_to(workdir)} was written" in line and f"found [{OTHER}, " in line
    assert chain(repo) == edited
    # a finished promotion whose promoted definition was changed since (its collection moved down the chain):
    # the rollback refuses and changes nothing
    done = promote(workdir)
    assert done.returncode == 0, done.stderr
    (record,) = [r for r in records(workdir) if r["status"] == "done"]
    promoted = chain(repo)
    assert promoted == [*record["collections"].values(), *edited]
    moved = [*promoted[1:], promoted[0]]
    Butler.from_config(str(repo), writeable=True).collections.redefine_chain(CHAIN, moved)
    proc = run(["pfscalib", "rollback", "--repo", str(repo), record["path"]], cwd=workdir)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    (line,) = errors(proc)
    assert f"expected [{', '.join(promoted)}], found [{', '.join(moved)}]; not rolling back" in line
    assert chain(repo) == moved
    # with the promoted definition back, the rollback restores the recorded one exactly
    Butler.from_config(str(repo), writeable=True).collections.redefine_chain(CHAIN, promoted)
    proc = run(["pfscalib", "rollback", "--repo", str(repo), record["path"]], cwd=workdir)
    assert proc.returncode == 0, proc.stderr
    assert chain(repo) == edited


def test_a_stale_record_resumed_is_one_line(site):
    workdir, repo = site
    linked = killed_at(workdir, "promote-certify", "--no-copy")
    copied = killed_at(workdir, "promote-certify")
    snakemake(workdir, BIAS, "--forcerun", BIAS, mtime_only=True)  # the sentinel rebuilt: another dataset
    old, before = chain(repo), collections(repo)
    for record, args in ((linked, ["--no-copy"]), (copied, [])):
        proc = promote(workdir, *args)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        (line,) = errors(proc)
        assert f"{record.relative_to(workdir)} is stale, not resumed: {BIAS} was rebuilt since" in line
        assert f"pfscalib rollback --repo {repo} {record.relative_to(workdir)}" in line
        assert chain(repo) == old and collections(repo) == before
    # as the line says: retire them, then promote again
    for record in (linked, copied):
        assert run(["pfscalib", "rollback", "--repo", str(repo), str(record)], cwd=workdir).returncode == 0
    # an interrupted promotion whose copy was purged since (its Gen RUN removed)
    record = killed_at(workdir, "promote-certify")
    run_name = next(iter(json.loads(record.read_text())["runs"].values()))
    removed = run(["butler", "remove-runs", str(repo), run_name, "--no-confirm", "--force"], cwd=workdir)
    assert removed.returncode == 0, removed.stderr
    old, before = chain(repo), collections(repo)
    proc = promote(workdir)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    (line,) = errors(proc)
    assert f"{record.relative_to(workdir)} is stale, not resumed: the copy " in line and " was purged" in line
    assert chain(repo) == old and collections(repo) == before


BAD = [
    ("--ticket", "PIPE2D-1/../../x $(touch pwned)", ["'..'", "'/'", "whitespace", "'$'"]),
    ("--ticket", "..", ["'..'"]),
    ("--ticket", "", ["is empty"]),
    ("--ticket", "PIPE2D 1", ["whitespace"]),
    ("--ticket", "PIPE2D-1\n", ["whitespace"]),
    ("--ticket", "`id`", ["backtick"]),
    ("--tag", "run'18", ["quote"]),
    ("--tag", 'run"18', ["quote"]),
    ("--tag", "run18;x", ["';'"]),
    ("--tag", "run/18", ["'/'"]),
    ("--chain", "PFS/../calib", ["'..'"]),
    ("--chain", "PFS//calib", ["empty part"]),
]


def test_bad_collection_name_parts_are_refused_with_the_repository_unchanged(site):
    workdir, repo = site
    old, before = chain(repo), collections(repo)
    for option, value, problems in BAD:
        options = {"--ticket": "PIPE2D-1", "--tag": "test", option: value}
        argv = ["pfscalib", "promote", *[a for o, v in options.items() for a in (o, v)], "--steps", "bias"]
        proc = run(argv, cwd=workdir)
        assert proc.returncode != 0 and "Traceback" not in proc.stderr, (value, proc.stderr)
        (line,) = errors(proc)
        assert line.startswith(f"pfscalib: promote: {option} {json.dumps(value, ensure_ascii=False)} "), line
        assert all(p in line for p in problems), (problems, line)
        assert chain(repo) == old and collections(repo) == before and records(workdir) == []
    assert not (workdir / "pwned").exists()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def registry_root(request, tmp_path) -> Path:
    """An empty repository on SQLite or on PostgreSQL (a schema of its own)."""
    config = {}
    if request.param == "postgresql":
        url = request.getfixturevalue("postgres_url")
        config = {"registry": {"db": url, "namespace": f"cas_{os.getpid()}_{time.monotonic_ns()}"}}
    Butler.makeRepo(str(tmp_path / "repo"), config=config)
    return tmp_path / "repo"


def test_the_compare_and_set_holds_the_chain_against_a_concurrent_writer(registry_root, monkeypatch):
    """Between compare_and_set_chain's read and its redefine, another butler's prepend_chain of the same
    chain waits (SQLite: the write transaction; PostgreSQL: the chain's row lock) and then lands on top
    of the new definition: neither change is lost."""
    from lsst.daf.butler.direct_butler._direct_butler_collections import DirectButlerCollections

    from pfscalib.job.butler import compare_and_set_chain

    setup = Butler.from_config(str(registry_root), writeable=True)
    for name in ("c1", "c2", "x"):
        setup.collections.register(name, CollectionType.CALIBRATION)
    setup.collections.register("shared", CollectionType.CHAINED)
    setup.collections.redefine_chain("shared", ["c1"])
    ours, theirs = (Butler.from_config(str(registry_root), writeable=True) for _ in range(2))
    read, found = threading.Event(), {}
    get_info = DirectButlerCollections.get_info

    def held_after_reading(self, name, *args, **kwargs):
        info = get_info(self, name, *args, **kwargs)
        if threading.current_thread().name == "cas":
            read.set()
            time.sleep(2)  # the other writer tries now
        return info

    monkeypatch.setattr(DirectButlerCollections, "get_info", held_after_reading)
    cas = threading.Thread(
        name="cas", target=lambda: found.update(cas=compare_and_set_chain(ours, "shared", ["c1"], ["c2", "c1"]))
    )
    cas.start()
    assert read.wait(60)
    start = time.monotonic()
    theirs.collections.prepend_chain("shared", ["x"])
    waited = time.monotonic() - start
    cas.join(60)
    assert found["cas"] == ["c1"]
    assert waited > 1, "the other writer was not held while the chain was compared and set"
    assert list(setup.collections.get_info("shared").children) == ["x", "c2", "c1"]
    # and a chain that is no longer the expected one is left as it is
    assert compare_and_set_chain(ours, "shared", ["c2", "c1"], ["c1"]) == ["x", "c2", "c1"]
    assert list(setup.collections.get_info("shared").children) == ["x", "c2", "c1"]


def test_a_rebuild_after_a_promotion_into_the_chain_the_build_reads(site):
    """The build reads PFS/calib; a promotion prepends to it, so the build's output chains no longer hold
    its inputs as pipetask flattened them when they were made. A forced rebuild still runs (pipetask's
    --rebase), into a fresh RUN."""
    workdir, _ = site
    assert promote(workdir).returncode == 0
    before = json.loads((workdir / BIAS).read_text())
    snakemake(workdir, BIAS, "--forcerun", BIAS, mtime_only=True)
    after = json.loads((workdir / BIAS).read_text())
    assert after["run"] != before["run"] and after["datasetId"] != before["datasetId"]
