"""Issue #17, the newcomer path: select-visits by the epoch's range in compact lists, one line for a bad
argument or query; the status table in 100 columns; the summary `make demo` ends with; make dag untracked."""

from __future__ import annotations

import json
import random
import re

import pandas as pd
import pytest
import yaml

from pfscalib.job import butler as butlerops
from pfscalib.plan.config import ConfigError, Settings
from pfscalib.plan.steps import STEP_NAMES, STEPS
from pfscalib.plan.visits import compact_visit_list, parse_visit_list
from pfscalib.plan.workflow import Workflow
from pfscalib.tools.select_visits import Request, check_request, select
from pfscalib.tools.status import COLUMNS, STATES, render, render_compact, summary

from conftest import PROJECT, run


def demo_settings(monkeypatch, **changes) -> Settings:
    monkeypatch.chdir(PROJECT)
    config = yaml.safe_load((PROJECT / "config/config.yaml").read_text())
    config.update(changes)
    return Settings(config, source="config/config.yaml")


@pytest.mark.parametrize(
    "visits,expected",
    [
        ([100, 101, 102, 103, 104], "100..104"),
        ([104, 100, 102], "100..104:2"),  # any order, a stride where three or more fit
        ([1, 2, 3, 5, 7, 9], "1..3^5..9:2"),
        ([1, 3, 4, 5], "1^3..5"),
        ([1, 10], "1^10"),  # a pair far apart: no stride
        ([7, 8], "7..8"),
        ([42], "42"),
        ([5, 5, 6], "5..6"),
    ],
)
def test_compact_visit_lists(visits, expected):
    assert compact_visit_list(visits) == expected
    assert parse_visit_list(expected) == sorted(set(visits))


def test_compact_visit_lists_round_trip():
    rng = random.Random(17)
    for _ in range(500):
        visits = rng.sample(range(1, 80), rng.randint(1, 40))
        text = compact_visit_list(visits)
        assert parse_visit_list(text) == sorted(visits)
        assert len(text.split("^")) <= len(visits)


@pytest.mark.parametrize(
    "request_,message",
    [
        (Request("run3"), "--epoch: 'run3' is not an epoch of config/config.yaml (run1, run2)"),
        (Request("run1", kind="quartz"), "--kind: 'quartz' is not a visit kind (bias, dark, flat, arc)"),
        (Request("run1", cameras=("b1", "x9")), "--cameras: camera(s) x9 not in config/config.yaml (b1, r1, b2, r2)"),
    ],
)
def test_select_visits_arguments_are_one_line(monkeypatch, request_, message):
    with pytest.raises(ConfigError) as error:
        check_request(demo_settings(monkeypatch), request_)
    assert str(error.value) == message


def rows(text: str) -> list[list[str]]:
    return [line.split("\t") for line in text.splitlines()[1:]]


def test_select_visits_takes_the_epoch_s_range_from_the_config(monkeypatch, demo_template):
    """The demo's visits: run1 100..127 on 2025-03-10, run2 200..227 on 2025-04-07 (the session's
    template, only read)."""
    settings = demo_settings(monkeypatch)
    butler = butlerops.open_butler(str(demo_template))
    starts = {r.id: r.timespan.begin for r in butler.query_dimension_records("visit", explain=False)}
    for epoch, first in (("run1", 100), ("run2", 200)):
        table = rows(select(settings, str(demo_template), Request(epoch)))
        visits = [v for row in table for v in parse_visit_list(row[1])]
        span = butlerops.make_timespan(settings.epochs[epoch]["begin"], settings.epochs[epoch]["end"])
        assert visits == [v for v in sorted(starts) if span.contains(starts[v])] == list(range(first, first + 28))
        assert table[0][:2] == [epoch, f"{first}..{first + 4}"] and table[0][2].startswith("5 bias, target bias")
    # a query matching the other epoch's visits selects none of them (the epoch is not only a label)
    other = select(settings, str(demo_template), Request("run1", where="visit.day_obs = 20250407"))
    assert rows(other) == []
    # a narrower range from the config narrows the selection: run1 up to the first dark
    first_dark = starts[105].tai.isot[:19]
    narrow = demo_settings(monkeypatch, epochs={"run1": {"begin": "2025-03-01T00:00:00", "end": first_dark}})
    assert rows(select(narrow, str(demo_template), Request("run1"))) == [
        ["run1", "100..104", "5 bias, target bias, 2025-03-10"]
    ]
    # by kind, and only visits with raws of the cameras asked for (the template has b1 r1 b2)
    arcs = rows(select(settings, str(demo_template), Request("run2", kind="arc", cameras=("b1", "b2"))))
    assert [r[:3] for r in arcs] == [["run2", "214", "b1,b2"], ["run2", "215", "b1,b2"]]
    assert rows(select(settings, str(demo_template), Request("run2", kind="arc", cameras=("r2",)))) == []


def test_select_visits_for_fiber_norms_leaves_out_the_fibre_profile_frames(monkeypatch, demo_repo):
    """The README's fiberNorms selection (undithered quartz) does not pick the fibre-profile frames, which are
    quartz at dither 0 too: they are told by their exposure record's pfs_design_id, that of a frame some
    profiles_run of the registry holds (here run1's, as the observatory or define-profiles defines it), which
    also tells run2's frames, taken with the same designs. --fiber-profiles selects only them."""
    from pfscalib.demo.bin import define_fiber_profiles_inputs

    settings = demo_settings(monkeypatch)
    where = "visit.target_name = 'flat' AND visit.dither = 0"
    quartz = rows(select(settings, str(demo_repo), Request("run1", where=where)))
    assert [r[1] for r in quartz] == ["108..109^116..127"]  # nothing tells them before a profiles_run
    pairs = [("116..117", "118"), ("119..120", "121"), ("122..123", "124"), ("125..126", "127")]
    groups = [a for bright, dark in pairs for a in ("--bright", bright, "--dark", dark)]
    assert define_fiber_profiles_inputs([str(demo_repo), "PFS", "run1_brn", *groups]) == 0
    for epoch, first in (("run1", 100), ("run2", 200)):
        norms = rows(select(settings, str(demo_repo), Request(epoch, where=where)))
        assert [r[1] for r in norms] == [f"{first + 8}..{first + 9}"], norms
        profiles = rows(select(settings, str(demo_repo), Request(epoch, where=where, fiber_profiles=True)))
        assert [v for r in profiles for v in parse_visit_list(r[1])] == list(range(first + 16, first + 28))
    # any other selection leaves them out too: the quartz of the flat step, dithered or not
    flats = rows(select(settings, str(demo_repo), Request("run2", kind="flat")))
    assert [v for r in flats for v in parse_visit_list(r[1])] == list(range(208, 214))


def test_a_where_typo_is_one_line(demo_template):
    where = "visit.target_name = 'BIAS"
    proc = run(["pfscalib", "select-visits", "--repo", str(demo_template), "--epoch", "run1", "--where", where])
    assert proc.returncode == 2 and proc.stdout == "" and "Traceback" not in proc.stderr
    assert proc.stderr.splitlines() == [
        'pfscalib: select-visits: --where "visit.target_name = \'BIAS" is not a valid registry query: '
        'cannot parse it at character 21 ("\'BIAS")'
    ]
    butler = butlerops.open_butler(str(demo_template))
    with pytest.raises(butlerops.QueryError) as error:  # a field that does not exist
        butlerops.select_visits(butler, "PFS", "visit.target_nam = 'bias'")
    assert str(error.value) == (
        "--where \"visit.target_nam = 'bias'\" is not a valid registry query: "
        "Unrecognized field 'target_nam' for visit."
    )


def status_frame(wf: Workflow, states: list[str]) -> pd.DataFrame:
    """A status table as status_table() makes it, the states given in turn to every cell."""
    cycle = iter(states * 100)
    out = []
    for step in STEP_NAMES:
        for epoch in wf.epochs:
            for unit in wf.units(step):
                state = next(cycle)
                out.append(
                    {"epoch": epoch, "step": step, "camera": unit, "datasetType": STEPS[step].certified_as,
                     "state": state, "status": STATES[state].text.format(n=2, why="bias.noise_ratio 2.97 > red 1.6")}
                )  # fmt: skip
    return pd.DataFrame(out, columns=COLUMNS)


@pytest.mark.parametrize("states", [["ok"], list(STATES)], ids=["all ok", "every state"])
def test_status_fits_in_100_columns(monkeypatch, states):
    monkeypatch.chdir(PROJECT)
    wf = Workflow(yaml.safe_load((PROJECT / "config/config.yaml").read_text()), source="config/config.yaml")
    assert len(wf.cameras) == 4 and len(wf.epochs) == 2 and len(STEP_NAMES) == 7
    df = status_frame(wf, states)
    text = render_compact(df, wf)
    lines = text.splitlines()
    assert max(map(len, lines)) <= 100, max(lines, key=len)
    table = lines[: lines.index("")]
    assert len(table) == 1 + 4 * 2 and table[0].split() == ["epoch", "camera", *STEP_NAMES]
    shown = {cell for line in table[1:] for cell in re.split(r"\s{2,}", line)[2:]}
    assert shown == {STATES[s].short for s in states}
    for state in states:  # a legend line for every state shown but ok
        assert (f"{STATES[state].short}: " in text) == (state != "ok")
    # the per-arm fiberNorms of arm b appears on b1 and b2
    fiber_norms = df[df["step"] == "fiberNorms"].set_index(["epoch", "camera"])["state"]
    for line in table[1:]:
        epoch, camera, *cells = re.split(r"\s{2,}", line)
        assert cells[-1] == STATES[fiber_norms[(epoch, camera[0])]].short


def test_summary_names_what_is_missing(monkeypatch):
    monkeypatch.chdir(PROJECT)
    wf = Workflow(yaml.safe_load((PROJECT / "config/config.yaml").read_text()), source="config/config.yaml")
    df = status_frame(wf, ["ok"])
    df.loc[(df["epoch"] == "run2") & (df["step"] == "dark") & (df["camera"] == "r1"), "state"] = "missing"
    lines = summary(df, wf).splitlines()
    assert lines[1] == (
        "  run1 [2025-03-01, 2025-04-01): pass (sp1 pass, sp2 pass); b1 r1 b2 r2: all 7 calibrations certified"
    )
    assert lines[2] == (
        "  run2 [2025-04-01, 2025-05-01): incomplete (sp1 incomplete, sp2 pass); b1 b2 r2: all 7 calibrations "
        "certified; r1 dark NOT CERTIFIED"
    )
    assert lines[-1] == "Report: snakemake --report report.html    Status: pfscalib status"


def test_make_dag_writes_only_untracked_files():
    proc = run(["make", "-n", "dag"], check=True)
    written = re.findall(r"> (\S+)", proc.stdout)
    assert written == ["dag.svg", "rulegraph.svg"]
    tracked = run(["git", "ls-files", *written], check=True).stdout
    ignored = run(["git", "check-ignore", *written]).stdout.split()
    assert tracked == "" and ignored == written


def test_status_rolls_the_verdicts_up_per_camera_spectrograph_and_run(monkeypatch):
    """Worst-of: held > incomplete > warn > pass; accepted counts as a pass, marked. A warning is `warn`,
    never "ok", in the table and the json."""
    monkeypatch.chdir(PROJECT)
    wf = Workflow(yaml.safe_load((PROJECT / "config/config.yaml").read_text()), source="config/config.yaml")
    df = status_frame(wf, ["ok"])
    df["verdict"] = "pass"

    def put(epoch: str, step: str, camera: str, state: str) -> None:
        at = (df["epoch"] == epoch) & (df["step"] == step) & (df["camera"] == camera)
        df.loc[at, ["state", "verdict"]] = [state, {"warn": "warn", "held": "held", "accepted": "accepted"}[state]]

    put("run1", "bias", "b1", "warn")
    put("run1", "dark", "b2", "accepted")
    put("run2", "flat", "r2", "held")
    text = render_compact(df, wf)
    assert len(max(text.splitlines(), key=len)) <= 100
    grid = {tuple(re.split(r"\s{2,}", ln.strip())[:1]): re.split(r"\s{2,}", ln.strip())[1:]
            for ln in text.split("\n\n")[1].splitlines()}  # fmt: skip
    assert grid[("verdict",)] == ["run1", "run2"]
    assert grid[("b1",)] == ["warn", "pass"] and grid[("b2",)] == ["pass (1 accepted)", "pass"]
    assert grid[("r2",)] == ["pass", "held"]
    assert grid[("sp1",)] == ["warn", "pass"] and grid[("sp2",)] == ["pass (1 accepted)", "held"]
    assert grid[("run",)] == ["warn (1 accepted)", "held"]
    assert not re.search(r"\bok\b", text)
    records = json.loads(render(df, "json", wf))
    roll = {(r["epoch"], r["scope"], r["camera"]): r["verdict"] for r in records if r["scope"] != "product"}
    assert roll[("run1", "spectrograph", "sp1")] == "warn" and roll[("run2", "run", "run2")] == "held"
    bias = next(r for r in records if (r["epoch"], r["step"], r["camera"]) == ("run1", "bias", "b1"))
    assert bias["verdict"] == "warn"
    lines = summary(df, wf).splitlines()
    assert lines[1].startswith("  run1 [2025-03-01, 2025-04-01): warn (1 accepted) (sp1 warn, sp2 pass (1 accepted));")
    assert "b1 bias warn" in lines[1]
    assert lines[2].startswith("  run2 [2025-04-01, 2025-05-01): held (sp1 pass, sp2 held);")
