"""Command building, table parsing and validation, without Snakemake or a Butler."""

from __future__ import annotations

import copy
import shlex
from pathlib import Path

import pytest
import yaml

from pfscalib.plan.commands import shell_quote
from pfscalib.plan.config import ConfigError
from pfscalib.plan.steps import STEP_NAMES, STEPS, priority
from pfscalib.plan.visits import parse_visit_list
from pfscalib.plan.workflow import Workflow

from conftest import PROJECT


@pytest.fixture
def pfs_config(monkeypatch) -> dict:
    monkeypatch.chdir(PROJECT)
    return yaml.safe_load((PROJECT / "config/pfs.example.yaml").read_text())


def argv_of(command: str) -> list[str]:
    return shlex.split(command)


def split_job(command: str) -> tuple[list[str], list[str]]:
    """`pfscalib job CERTIFY-OPTIONS -- pipetask run ...` -> (pipetask argv, job argv)."""
    argv = argv_of(command)
    return argv[argv.index("--") + 1 :], argv[: argv.index("--")]


def option(argv: list[str], flag: str) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv) if a == flag]


SEED = {  # the guide's later revision: pipeline, -i (own calib first), -c, certify collection, dataset type
    "bias": ("bias.yaml", "u/pfsuser/calib,PFS/defaults", [], "u/pfsuser/calib/bias", "bias"),
    "dark": ("dark.yaml", "u/pfsuser/calib,PFS/defaults", [], "u/pfsuser/calib/dark", "dark"),
    "flat": ("flat.yaml", "u/pfsuser/calib,PFS/defaults", [], "u/pfsuser/calib/fiberFlat", "fiberFlat"),
    "bootstrap": (
        "bootstrap.yaml",
        "u/pfsuser/calib,PFS/defaults",
        [
            "isr:doCrosstalk=False",
            "bootstrap:profiles.profileRadius=2",
            "bootstrap:profiles.profileSwath=2500",
            "bootstrap:profiles.profileOversample=3",
            "bootstrap:spectralOffset=-10",
        ],
        "u/pfsuser/bootstrap",
        "detectorMap_bootstrap",
    ),
    "detectorMap": (
        "detectorMap.yaml",
        "u/pfsuser/calib,u/pfsuser/bootstrap,PFS/defaults",
        [
            "measureCentroids:connections.calibDetectorMap=detectorMap_bootstrap",
            "fitDetectorMap:fitDetectorMap.doSlitOffsets=True",
            "fitDetectorMap:fitDetectorMap.order=4",
            "fitDetectorMap:fitDetectorMap.soften=0.03",
        ],
        "u/pfsuser/calib/detectorMap_calib",
        "detectorMap_candidate",
    ),
    "fiberProfiles": (
        "fitFiberProfiles.yaml",
        "u/pfsuser/calib,PFS/fiberProfilesInputs,PFS/defaults",
        [
            "fitProfiles:profiles.profileRadius=10",
            "fitProfiles:profiles.profileOversample=3",
            "fitProfiles:profiles.profileSwath=500",
        ],
        "u/pfsuser/calib/fiberProfiles",
        "fiberProfiles",
    ),
    "fiberNorms": (
        "fiberNorms.yaml",
        "u/pfsuser/calib,PFS/defaults",
        [],
        "u/pfsuser/calib/fiberNorms_calib",
        "fiberNorms_calib",
    ),
}


@pytest.mark.parametrize("step", STEP_NAMES)
def test_commands_reproduce_the_seed(pfs_config, step):
    wf = Workflow(pfs_config)
    unit = "r" if step == "fiberNorms" else "r1"
    command = wf.commands.job(step, "run18", unit)
    p, c = split_job(command)
    pipeline, inputs, overrides, collection, dataset_type = SEED[step]
    assert p[:2] == ["pipetask", "run"] and c[:2] == ["pfscalib", "job"]
    assert option(p, "-p") == [f"$DRP_STELLA_DIR/pipelines/{pipeline}"]
    assert option(p, "-i") == [inputs]
    assert option(p, "-c") == overrides
    assert option(p, "-j") == [] and option(p, "-b") == ["/work/pfs/data/datastore"]  # rule appends -j
    assert option(p, "--instrument") == ["lsst.obs.pfs.PrimeFocusSpectrograph"]
    assert option(p, "-o") == [f"u/pfsuser/run18/{step}/{unit}"]
    assert "--register-dataset-types" in p and "--fail-fast" in p
    where = option(p, "-d")[0]
    assert where.endswith(
        "AND arm='r' AND spectrograph IN (1, 2, 3, 4)" if step == "fiberNorms" else "AND arm='r' AND spectrograph=1"
    )
    assert option(c, "--calib") == [collection] and option(c, "--dataset-type") == [dataset_type]
    assert option(c, "--begin-date") == ["2000-01-01T00:00:00"] and option(c, "--end-date") == ["2050-12-31T23:59:59"]
    if step == "detectorMap":
        assert option(c, "--copy-as") == ["detectorMap_calib"]


def test_bootstrap_query_and_offset_per_camera(pfs_config):
    pfs_config["spectralOffset"]["b2"] = 4.5
    wf = Workflow(pfs_config)
    p, _ = split_job(wf.commands.job("bootstrap", "run18", "b2"))
    assert option(p, "-d") == ["instrument='PFS' AND visit IN (11, 22) AND arm='b' AND spectrograph=2"]
    assert "bootstrap:spectralOffset=4.5" in option(p, "-c")


def test_fiber_profiles_inputs_reproduce_the_seed_groups(pfs_config):
    wf = Workflow(pfs_config)
    argv = argv_of(wf.commands.define_profiles("run18", "brn"))
    seed = argv[argv.index("--") + 1 :]
    assert seed[:4] == ["defineFiberProfilesInputs.py", "/work/pfs/data/datastore", "PFS", "run18_brn"]
    assert option(seed, "--bright") == ["113855..113863", "113903..113911", "114190..114198", "114238..114246"]
    assert option(seed, "--dark") == ["113845..113853", "113893..113901", "114180..114188", "114228..114236"]
    p, _ = split_job(wf.commands.job("fiberProfiles", "run18", "n3"))
    assert option(p, "-d") == ["profiles_run = 'run18_brn' AND arm='n' AND spectrograph=3"]


def test_per_camera_config_overrides(pfs_config):
    pfs_config["steps"]["flat"]["camera_config"] = {"b": ["isr:doDefect=False"], "b3": ["flatCombine:x=1"]}
    wf = Workflow(pfs_config)
    assert wf.config_overrides("flat", "b3") == ["isr:doDefect=False", "flatCombine:x=1"]
    assert wf.config_overrides("flat", "r3") == []


def test_demo_config_targets(monkeypatch):
    monkeypatch.chdir(PROJECT)
    wf = Workflow(yaml.safe_load((PROJECT / "config/config.yaml").read_text()))
    assert len(wf.all_sentinels()) == 2 * (6 * 4 + 2)
    assert wf.needs("fiberNorms", "run1", "b") == [
        "results/certified/run1/fiberProfiles/b1.json",
        "results/certified/run1/fiberProfiles/b2.json",
    ]
    assert wf.needs("dark", "run2", "r2") == ["results/certified/run2/bias/r2.json"]


@pytest.mark.parametrize(
    "text,expected", [("5", [5]), ("3..6", [3, 4, 5, 6]), ("1..9:4", [1, 5, 9]), ("1^4..5", [1, 4, 5])]
)
def test_visit_lists(text, expected):
    assert parse_visit_list(text) == expected


def test_shell_quote_never_splices():
    for hostile in ["a'; rm -rf / #", "$(touch /tmp/x)", "`id`", 'x"y', "with space", "it's $HOME"]:
        assert shlex.split(shell_quote(hostile)) == [hostile]


# ---------------------------------------------------------------- bad input: one clear line each
def _tsv(tmp: Path, name: str, text: str) -> str:
    path = tmp / name
    path.write_text(text)
    return str(path)


BAD_CONFIGS = [
    (
        "overlap",
        lambda c: c["epochs"].update(run2={"begin": "2025-03-15T00:00:00", "end": "2025-05-01T00:00:00"}),
        "overlaps epoch run1",
    ),
    (
        "end before begin",
        lambda c: c["epochs"].update(run1={"begin": "2025-03-01T00:00:00", "end": "2025-02-01T00:00:00"}),
        "epochs.run1: end 2025-02-01T00:00:00 is not after begin",
    ),
    ("bad date", lambda c: c["epochs"].update(run1={"begin": "yesterday"}), "epochs.run1.begin: 'yesterday' is not"),
    (
        "impossible date",
        lambda c: c["epochs"].update(run1={"begin": "2025-02-30"}),
        "epochs.run1.begin: '2025-02-30' is not an ISO-8601 date",
    ),
    ("unknown camera", lambda c: c.update(cameras=["b1", "x9"]), "cameras.1: 'x9' is not a camera"),
    ("non-numeric threads", lambda c: c["steps"].update(bias={"threads": "many"}), "steps.bias.threads: 'many' is not"),
    ("unknown step", lambda c: c["steps"].update(biass={"threads": 1}), "steps: unknown key(s) 'biass'"),
    ("missing offset", lambda c: c["spectralOffset"].pop("r2"), "no bootstrap spectralOffset for camera r2"),
    ("offset of unknown camera", lambda c: c["spectralOffset"].update(n4=1.0), "spectralOffset.n4: not a configured"),
    ("missing key", lambda c: c.pop("rerun"), "'rerun' is a required property"),
    ("clean a product", lambda c: c["steps"].update(bias={"clean": ["bias"]}), "would remove the certified bias"),
    ("missing table", lambda c: c["visits"].update(dark="nope.tsv"), "table nope.tsv does not exist"),
    ("wrong type", lambda c: c.update(cleanup="yes"), "cleanup: 'yes' is not of type 'boolean'"),
    ("zero threads", lambda c: c["steps"].update(dark={"threads": 0}), "steps.dark.threads: 0 is less than"),
    ("malformed -c", lambda c: c["steps"].update(flat={"config": ["isr.doFlat"]}), "steps.flat.config.0: 'isr.doFlat'"),
    (
        "camera_config of unknown camera",
        lambda c: c["steps"].update(flat={"camera_config": {"n2": ["isr:x=1"]}}),
        "steps.flat.camera_config.n2: not a configured camera or arm",
    ),
    (
        "validity of unknown epoch",
        lambda c: c["steps"].update(bias={"validity": {"run7": {"begin": "2025-01-01T00:00:00"}}}),
        "steps.bias.validity.run7: unknown epoch",
    ),
    ("no table for a step", lambda c: c["visits"].pop("fiberNorms"), "no visit table for step(s) fiberNorms"),
]


@pytest.mark.parametrize("name,mutate,message", BAD_CONFIGS, ids=[b[0] for b in BAD_CONFIGS])
def test_bad_config_is_one_clear_line(monkeypatch, name, mutate, message):
    monkeypatch.chdir(PROJECT)
    config = copy.deepcopy(yaml.safe_load((PROJECT / "config/config.yaml").read_text()))
    mutate(config)
    with pytest.raises(ConfigError) as err:
        Workflow(config)
    text = str(err.value)
    assert "\n" not in text and message in text


BAD_TABLES = [
    ("missing column", "epoch\tcomment\nrun1\tx\n", "missing column 'visits'"),
    ("extra column", "epoch\tvisits\tcolour\nrun1\t100\tred\n", "unexpected column(s) 'colour'"),
    (
        "reversed range",
        "epoch\tvisits\nrun1\t12..5\nrun2\t200..204\n",
        "row 2 (column visits): bad visit range '12..5'",
    ),
    (
        "garbage visits",
        "epoch\tvisits\nrun1\t10-12\nrun2\t200\n",
        "row 2: visits: '10-12' is not a visit list: visits must be N, A..B or A..B:S joined by ^",
    ),
    ("unknown epoch", "epoch\tvisits\nrun9\t100\n", "row 2: epoch 'run9' is not in config epochs"),
    (
        "unknown camera",
        "epoch\tvisits\tcameras\nrun1\t100\tz1\nrun2\t200\t\n",
        "row 2: cameras: 'z1' is not a list of cameras",
    ),
    ("camera not configured", "epoch\tvisits\tcameras\nrun1\t100\tn1\nrun2\t200\t\n", "camera(s) n1 not in config"),
    (
        "duplicate visit",
        "epoch\tvisits\nrun1\t100..104\nrun1\t104\nrun2\t200\n",
        "row 3: visit 104 is already selected in row 2",
    ),
    ("epoch without visits", "epoch\tvisits\nrun1\t100\n", "no visits for epoch run2"),
    ("empty table", "epoch\tvisits\n", "table has no rows"),
    ("blank file", "\n# only a comment\n", "table is empty"),
]


@pytest.mark.parametrize("name,text,message", BAD_TABLES, ids=[b[0] for b in BAD_TABLES])
def test_bad_table_is_one_clear_line(monkeypatch, tmp_path, name, text, message):
    monkeypatch.chdir(PROJECT)
    config = yaml.safe_load((PROJECT / "config/config.yaml").read_text())
    config["visits"]["bias"] = _tsv(tmp_path, "bias.tsv", text)
    with pytest.raises(ConfigError) as err:
        Workflow(config)
    text = str(err.value)
    assert "\n" not in text and message in text and "bias.tsv" in text


BAD_PROFILE_TABLES = [
    ("no role", "epoch\tvisits\tgroup\trole\nrun1\t116\t0\t\n", "need a group number and a role"),
    ("bad role", "epoch\tvisits\tgroup\trole\nrun1\t116\t0\tlit\n", "role: 'lit' is not one of"),
    (
        "group gap",
        "epoch\tvisits\tgroup\trole\nrun1\t116\t0\tbright\nrun1\t119\t2\tbright\nrun2\t216\t0\tbright\n",
        "groups must be numbered 0..N-1, got [0, 2]",
    ),
    (
        "dark only",
        "epoch\tvisits\tgroup\trole\nrun1\t118\t0\tdark\nrun2\t216\t0\tbright\n",
        "group 0 has no bright visits",
    ),
    (
        "darks in some groups",
        "epoch\tvisits\tgroup\trole\nrun1\t116\t0\tbright\nrun1\t118\t0\tdark\n"
        "run1\t119\t1\tbright\nrun2\t216\t0\tbright\n",
        "either every fiberProfiles group has dark visits",
    ),
]


@pytest.mark.parametrize("name,text,message", BAD_PROFILE_TABLES, ids=[b[0] for b in BAD_PROFILE_TABLES])
def test_bad_fiber_profile_table(monkeypatch, tmp_path, name, text, message):
    monkeypatch.chdir(PROJECT)
    config = yaml.safe_load((PROJECT / "config/config.yaml").read_text())
    config["visits"]["fiberProfiles"] = _tsv(tmp_path, "fiberProfiles.tsv", text)
    with pytest.raises(ConfigError) as err:
        Workflow(config)
    assert message in str(err.value) and "fiberProfiles.tsv" in str(err.value) and "\n" not in str(err.value)


def test_bootstrap_needs_two_visits(monkeypatch, tmp_path):
    monkeypatch.chdir(PROJECT)
    config = yaml.safe_load((PROJECT / "config/config.yaml").read_text())
    config["visits"]["bootstrap"] = _tsv(tmp_path, "b.tsv", "epoch\tvisits\nrun1\t108\nrun2\t208^214\n")
    with pytest.raises(ConfigError, match="bootstrap needs exactly two visits"):
        Workflow(config)


def test_threads_never_exceed_what_the_job_can_use(pfs_config):
    """16 configured threads; a bootstrap has two visits (a quartz and an arc), so -j 2 and 2 CPUs."""
    wf = Workflow(pfs_config)
    assert wf.job_threads("bootstrap", "run18", "b1") == 2
    assert wf.job_threads("dark", "run18", "r1") == len(wf.selections[("dark", "run18", "r1")].visits) < 16
    assert wf.job_threads("fiberNorms", "run18", "r") == 16  # per arm: visits x 4 spectrographs
    pfs_config["steps"]["bootstrap"]["threads"] = 1
    assert Workflow(pfs_config).job_threads("bootstrap", "run18", "b1") == 1


def test_priority_follows_the_chain():
    """Jobs with more of the chain ahead go first when cores are scarce; each step outranks what it feeds,
    and every step outranks QA and the table (Snakemake's default priority 0)."""
    ranks = [priority(step) for step in STEP_NAMES]
    assert ranks == sorted(ranks, reverse=True) and len(set(ranks)) == len(ranks) and min(ranks) > 0
    assert all(priority(need) > priority(step) for step in STEP_NAMES for need in STEPS[step].needs)


def test_no_step_name_comparisons_outside_steps_py():
    """Every difference between steps is a field of Step: no other module or rule compares step names."""
    import re

    names = "|".join(STEP_NAMES)
    pattern = re.compile(rf"""(==|!=|\bin)\s*\(?\s*["'](?:{names})["']""")
    package = [p for p in (PROJECT / "scripts/pfscalib").rglob("*.py") if "demo" not in p.parts]
    sources = [*package, *(PROJECT / "rules").glob("*.smk"), PROJECT / "Snakefile"]
    assert len(package) > 30
    found = [
        f"{p.name}: {m.group(0)}" for p in sources if p.name != "steps.py" for m in pattern.finditer(p.read_text())
    ]
    assert not found, found


def test_disk_estimate_from_connections_and_pfs_sizes(tmp_path, monkeypatch):
    """Issue #21: a job's writes are counted from its pipeline's connections and visits, at the PFS detector
    sizes by default (no `disk:` block), and the plan's verdict follows the largest job."""
    from pfscalib.plan.disk import plan

    config = yaml.safe_load((PROJECT / "config/config.yaml").read_text())
    config.pop("disk", None)
    config["pipelines_dir"] = str(PROJECT / config["pipelines_dir"])
    config["limits"] = str(PROJECT / config["limits"])
    config["visits"] = {k: str(PROJECT / v) for k, v in config["visits"].items()}
    monkeypatch.chdir(tmp_path)  # no visit check yet: a dither counts one per visit
    disk = Workflow(config).disk
    profiles = disk.job("fiberProfiles", "run1", "b1")  # 12 visits in 4 groups, one camera
    assert profiles.datasets["postISRCCD"] == (12, 12 * 205.3e6)
    assert profiles.datasets["fiberProfiles_group"][0] == 4 and profiles.datasets["packages"][0] == 1
    assert profiles.stays == pytest.approx(profiles.written - 12 * (205.3e6 * 2 + 68.4e6))  # cleaned: ISR, CR, calexp
    assert disk.job("fiberNorms", "run1", "b").datasets["pfsArm"][0] == 2 * 2  # 2 visits x b1, b2
    assert disk.job("flat", "run1", "b1").datasets["ditherFlat"][0] == 6
    assert disk.job("detectorMap", "run1", "b1").datasets["detectorMap_calib"][0] == 1  # the certified copy
    jobs = disk.jobs()
    largest = max(jobs, key=lambda j: j.written)
    fits, free = plan(disk, largest.disk_mb, 2), plan(disk, None, 2)
    assert fits.holds and not plan(disk, largest.disk_mb - 1, 2).holds
    assert sum(s.total for s in free.steps) == pytest.approx(sum(j.written for j in jobs))
    assert fits.stays + largest.written <= free.peak * 2  # one job at a time: at most stays plus the largest
    assert fits.peak <= fits.stays + largest.written and fits.peak <= free.peak
