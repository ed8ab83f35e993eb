"""What is certified, from the registry, next to what the sentinels claim.

pfscalib status [--config config/config.yaml] [--format table|tsv|json] [--wide]
pfscalib summary [--config config/config.yaml]      what `make demo` prints at its end
"""

from __future__ import annotations

import dataclasses
import json
import shlex
from pathlib import Path

import pandas as pd

from pfscalib.job import trend
from pfscalib.plan import paths
from pfscalib.plan.commands import shell_join
from pfscalib.plan.limits import VERDICTS, verdict_word
from pfscalib.plan.preflight import enter_workdir, load
from pfscalib.plan.steps import STEP_NAMES, STEPS
from pfscalib.plan.workflow import Workflow

COLUMNS = ["epoch", "step", "camera", "datasetType", "status", "begin", "end", "run", "datasetId", "visits", "state",
           "verdict", "staleInputs", "rebuild"]  # fmt: skip


@dataclasses.dataclass(frozen=True)
class State:
    """One state of a camera's calibration: `short` is its cell in the compact table (at most 8
    characters: with the steps' names as headers the table then fits in 100 columns), `text` its words
    in the wide table, tsv and json. A new state (held, not applicable) is one more entry in STATES."""

    short: str
    text: str
    ok: bool = False


STATES = {
    # certified and judged by the quality gate: pass / warn / accepted (one vocabulary: pfscalib.plan.limits)
    "ok": State("pass", "pass", ok=True),
    "range": State("pass*", "pass (range differs from config)", ok=True),
    "warn": State("warn", "warn: {why}", ok=True),
    "accepted": State("accepted", "accepted: {why}", ok=True),
    "missing": State("MISSING", "NOT CERTIFIED"),
    "lost": State("LOST", "NOT CERTIFIED (sentinel says certified)"),
    "unrecorded": State("FOREIGN", "certified, no sentinel"),
    "differs": State("DIFFERS", "differs from sentinel"),
    "overlap": State("OVERLAP", "{n} certifications overlap the epoch"),
    "held": State("held", "held: {why}"),
    # certified as built, but an upstream product it was built from has been rebuilt since (or is itself stale)
    "stale": State("STALE", "stale: {why}"),
    # a camera x step the workflow does not build (pfscalib.plan.steps.ARMS, config camera_steps): shown as such
    "n/a": State("n/a", "n/a: its ISR does not read it (n: bias, dark), or camera_steps skips it", ok=True),
    "borrowed": State("from r", "n/a: from r of the spectrograph (the ISR's r<->m fallback)", ok=True),
    # the ISR found the camera's own arm's product in its inputs first (a site's m bias): not built, not r's
    "own": State("site", "n/a: the site's own product of the arm (found before r's)", ok=True),
}


# The gate's verdict of a state (pass / warn / held / accepted); a calibration not certified (missing, lost,
# differs ...) has none and makes its roll-up "incomplete"; a step the camera does not build counts for nothing.
ROW_VERDICT = {"ok": "pass", "range": "pass", "warn": "warn", "accepted": "accepted", "held": "held"}
NOT_BUILT = {"n/a", "borrowed", "own"}
ROLLUP_ORDER = (*VERDICTS[:3], "incomplete", "held")  # pass < accepted < warn < incomplete < held


def worst(states: list[str]) -> str:
    """Worst-of the states' verdicts (held > incomplete > warn > pass; accepted counts as a pass, marked:
    "pass (1 accepted)")."""
    words = [ROW_VERDICT.get(s, "incomplete") for s in states if s not in NOT_BUILT]
    top = max(words, key=ROLLUP_ORDER.index, default="pass")
    accepted = words.count("accepted")
    top = "pass" if top == "accepted" else top
    return top + (f" ({accepted} accepted)" if accepted else "")


def rollup(df: pd.DataFrame, cameras: list[str]) -> pd.DataFrame:
    """One verdict per epoch (run) and camera, spectrograph, and the whole run, worst-of its products' (a
    per-arm product counts for every camera of its arm)."""
    grid = camera_states(df, cameras)
    rows = []
    for epoch in dict.fromkeys(df["epoch"]):
        per_camera = {camera: list(grid.loc[(epoch, camera)]) for camera in cameras}
        for camera, states in per_camera.items():
            rows.append({"epoch": epoch, "scope": "camera", "name": camera, "verdict": worst(states)})
        for sg in sorted({c[1:] for c in cameras}):
            states = [s for c, st in per_camera.items() if c[1:] == sg for s in st]
            rows.append({"epoch": epoch, "scope": "spectrograph", "name": f"sp{sg}", "verdict": worst(states)})
        every = [s for st in per_camera.values() for s in st]
        rows.append({"epoch": epoch, "scope": "run", "name": epoch, "verdict": worst(every)})
    return pd.DataFrame(rows, columns=["epoch", "scope", "name", "verdict"])


def render_rollup(roll: pd.DataFrame) -> str:
    """Rows: cameras, spectrographs, the run; columns: epochs; each cell the worst-of verdict."""
    epochs = list(dict.fromkeys(roll["epoch"]))
    names = list(dict.fromkeys(zip(roll["scope"], roll["name"].where(roll["scope"] != "run", "run"))))
    cell = {(r.epoch, r.scope, r.name if r.scope != "run" else "run"): r.verdict for r in roll.itertuples()}
    rows = [["verdict", *epochs]] + [[name, *(cell[(e, scope, name)] for e in epochs)] for scope, name in names]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows)


@dataclasses.dataclass(frozen=True)
class Stale:
    """Why a product is stale: `replaced` the upstream products rebuilt since it was built (the root causes,
    by name: "bias b1"), `roots` the sentinels of the stale products built directly from a replaced one (what
    to force: everything downstream of them is stale too)."""

    replaced: tuple[str, ...]
    roots: tuple[str, ...]


def product_name(sentinel_path: str) -> str:
    """results/certified/run1/bias/b1.json -> "bias b1" (paths.sentinel)."""
    p = Path(sentinel_path)
    return f"{p.parent.name} {p.stem}"


def staleness(by_path: dict[Path, dict], workdir: Path) -> dict[str, Stale]:
    """The stale sentinels (paths as the jobs record them, relative to the work directory): a product is stale
    when the datasetId it recorded for an input (`inputs`: the upstream sentinels it read) differs from that
    sentinel's now, or when an input is stale itself; what Snakemake's dry run would rerun. A sentinel without
    `inputs` (written before they were recorded) or an input without a sentinel now is not judged."""
    current = {str(p.relative_to(workdir)): s for p, s in by_path.items()}
    out: dict[str, Stale | None] = {}

    def judge(path: str) -> Stale | None:
        if path not in out:
            out[path] = None  # a cycle cannot happen (the steps' needs are a chain); guards the recursion
            replaced, roots = [], []
            for need, recorded in (current[path].get("inputs") or {}).items():
                if need not in current:
                    continue
                if current[need].get("datasetId") != recorded:
                    replaced.append(product_name(need))
                    roots.append(path)
                if upstream := judge(need):
                    replaced += upstream.replaced
                    roots += upstream.roots
            out[path] = Stale(tuple(dict.fromkeys(replaced)), tuple(dict.fromkeys(roots))) if replaced else None
        return out[path]

    return {path: stale for path in current if (stale := judge(path))}


def rebuild_command(target: str, roots: list[str] | tuple[str, ...], config_path: str = paths.DEFAULT_CONFIG) -> str:
    """The snakemake command that rebuilds a stale product and exactly the stale products it is built from: the
    target, then -R the stale products built directly from a replaced input (docs/recovery.md)."""
    configfile = (
        [] if Path(config_path).resolve() == Path(paths.DEFAULT_CONFIG).resolve() else ["--configfile", config_path]
    )
    return shell_join(["snakemake", "--cores", "2", *configfile, target, "-R", *roots])


def status_table(wf: Workflow, workdir: Path = Path("."), config_path: str = paths.DEFAULT_CONFIG) -> pd.DataFrame:
    from lsst.daf.butler import Timespan

    from pfscalib.job import butler as butlerops

    butler = butlerops.open_butler(wf.datastore)
    # every sentinel read once: this row's own, and the camera's earlier builds for the trend
    by_path = {p: json.loads(p.read_text()) for p in sorted((workdir / "results/certified").rglob("*.json"))}
    sentinels = list(by_path.values())
    stale = staleness(by_path, workdir)
    rows = []
    for step in STEP_NAMES:
        s = STEPS[step]
        collection = wf.calib_collection(step)
        certs = butlerops.certified(butler, collection, s.certified_as)
        for epoch in wf.epochs:
            span = butlerops.make_timespan(*wf.validity(step, epoch))
            for unit in wf.all_units(step):
                if wf.role(step, unit) != "build":
                    maker = wf.maker(step, unit)
                    row = dict.fromkeys(COLUMNS, "") | {"epoch": epoch, "step": step, "camera": unit}
                    state, words = borrowed(epoch, unit, s.certified_as, maker, workdir) if maker else ("n/a", "n/a")
                    rows.append(row | {"datasetType": s.certified_as, "state": state, "status": words, "verdict": ""})
                    continue
                data_id = {"arm": unit[0], **({} if s.per_arm else {"spectrograph": int(unit[1:])})}
                mine = [
                    c
                    for c in certs
                    if all(c["ref"].dataId[k] == v for k, v in data_id.items())
                    and Timespan(c["begin"], c["end"]).overlaps(span)
                ]
                sentinel = by_path.get(workdir / paths.sentinel(step, epoch, unit))
                row = {
                    "epoch": epoch,
                    "step": step,
                    "camera": unit,
                    "datasetType": s.certified_as,
                    "begin": "",
                    "end": "",
                    "run": "",
                    "datasetId": "",
                    "visits": len(sentinel["visits"]) if sentinel else "",
                    "staleInputs": "",
                    "rebuild": "",
                }
                if not mine:
                    state = "lost" if sentinel else "missing"
                else:
                    cert = mine[0]
                    row.update(
                        begin=cert["begin"].isot[:19] if cert["begin"] else "-inf",
                        end=cert["end"].isot[:19] if cert["end"] else "inf",
                        run=cert["ref"].run,
                        datasetId=str(cert["ref"].id),
                    )
                    if len(mine) > 1:
                        state = "overlap"
                    elif sentinel is None:
                        state = "unrecorded"
                    elif sentinel["datasetId"] != str(cert["ref"].id):
                        state = "differs"
                    else:
                        state = "ok" if Timespan(cert["begin"], cert["end"]) == span else "range"
                why = ""
                if state in ("ok", "range") and sentinel is not None:  # what the gate said of it
                    quality = sentinel.get("quality")
                    word = verdict_word(quality)
                    if word == "warn":
                        state = "warn"
                        why = "; ".join(r["rule"] for r in quality.get("rules", []) if r.get("level") == "yellow")
                    elif word == "accepted":
                        state, why = "accepted", f"{quality['accepted']['reason']} (by {quality['accepted']['by']})"
                    # against the camera's earlier builds (pfscalib.job.trend): a drift inside the fixed limits
                    drifts = [
                        b for b in trend.judge(sentinel, sentinels, wf.epochs, wf.config.get("trend")) if b.outside
                    ]
                    if drifts and state in ("ok", "range", "warn"):
                        state, why = "warn", "; ".join(filter(None, [why, *(f"trend: {b.words()}" for b in drifts)]))
                held = workdir / paths.held(step, epoch, unit)
                if held.exists():  # the quality gate held the last build (an incumbent stays certified)
                    state, why = "held", "; ".join(json.loads(held.read_text())["failing"])
                target = paths.sentinel(step, epoch, unit)
                if state in ("ok", "range", "warn", "accepted") and (why_stale := stale.get(target)):
                    command = rebuild_command(target, why_stale.roots, config_path)
                    via = [product_name(r) for r in why_stale.roots if r != target]
                    state = "stale"
                    why = f"{', '.join(why_stale.replaced)} rebuilt since" + (f" (via {', '.join(via)})" if via else "")
                    why += f"; rebuild: {command}"
                    row.update(staleInputs=", ".join(why_stale.replaced), rebuild=command)
                status = STATES[state].text.format(n=len(mine), why=why)
                rows.append({**row, "state": state, "status": status, "verdict": ROW_VERDICT.get(state, "")})
    df = pd.DataFrame(rows, columns=COLUMNS)
    df.attrs["config_path"] = config_path  # for the stale products' one command (stale_notes)
    return df


def borrowed(epoch: str, camera: str, dataset_type: str, lender: str, workdir: Path) -> tuple[str, str]:
    """Whose product a camera's ISR read where it builds none (m: a bias, a dark): what the ISR of the
    camera's first built step actually used (its header provenance, recorded in the sentinel), which is the
    camera's own arm where the inputs hold one (obs_pfs fe94433 isrTask.py:666-697, lookupBiasDark), and
    the lender's (r of the spectrograph) only as the fallback; before any such job ran, the expectation."""
    for step in STEP_NAMES:
        path = workdir / paths.sentinel(step, epoch, camera)
        sentinel = json.loads(path.read_text()) if path.exists() else {}
        for used in sentinel.get("calibInputs", {}).values():
            if used.get("datasetType") == dataset_type:
                data_id = used.get("dataId", {})
                whose = f"{data_id.get('arm', '?')}{data_id.get('spectrograph', '')}"
                state = "borrowed" if whose == lender else "own"
                return state, f"n/a: {whose}'s {dataset_type} from {used.get('run')} (read by {step})"
    return "borrowed", f"n/a: from {lender}"


def all_ok(df: pd.DataFrame) -> bool:
    return all(STATES[state].ok for state in df["state"])


def camera_states(df: pd.DataFrame, cameras: list[str]) -> pd.DataFrame:
    """One row per epoch and camera, one column per step: the state's key. A per-arm step's state is
    that of the camera's arm."""
    states = {(r.epoch, r.step, r.camera): r.state for r in df.itertuples()}
    epochs = list(dict.fromkeys(df["epoch"]))
    rows = {
        (epoch, camera): [states[(epoch, step, camera[0] if STEPS[step].per_arm else camera)] for step in STEP_NAMES]
        for epoch in epochs
        for camera in cameras
    }
    index = pd.MultiIndex.from_tuples(list(rows), names=["epoch", "camera"])
    return pd.DataFrame(list(rows.values()), index=index, columns=list(STEP_NAMES))


def render_compact(df: pd.DataFrame, wf: Workflow) -> str:
    """Fits in 100 columns: the states in short words, the validity ranges and the legend below."""
    grid = camera_states(df, wf.cameras)
    rows = [["epoch", "camera", *grid.columns]]
    rows += [[epoch, camera, *(STATES[s].short for s in states)] for (epoch, camera), states in grid.iterrows()]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    text = "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows)
    ranges = ", ".join(f"{e} [{v['begin'][:10]}, {(v.get('end') or 'inf')[:10]})" for e, v in wf.epochs.items())
    notes = [f"epochs: {ranges}"]
    per_arm = [s for s in STEP_NAMES if STEPS[s].per_arm]
    if per_arm:
        notes.append(f"{', '.join(per_arm)}: one per arm, shown on each camera of the arm")
    seen = dict.fromkeys(grid.to_numpy().ravel())
    why = {"held": "held by the quality gate (results/held, results/qa/holds.tsv)", "warn": "certified with a warning",
           "accepted": "held, certified by an accept: entry",
           "stale": "built from an upstream product rebuilt since (--wide, tsv, json: which, per product)"}  # fmt: skip
    notes += [f"{STATES[s].short}: {STATES[s].text.format(n='several', why=why.get(s, ''))}" for s in seen if s != "ok"]
    notes += stale_notes(df, wf)
    notes.append("--wide: validity ranges per cell; --format tsv|json: runs and dataset ids")
    roll = render_rollup(rollup(df, wf.cameras))
    return text + "\n\n" + roll + "\n\n" + "\n".join(notes) + "\n"


def _words(column: pd.Series) -> list[str]:
    """A column's non-empty strings (a frame made by hand may leave it NaN)."""
    return [v for v in column if isinstance(v, str) and v]


def stale_notes(df: pd.DataFrame, wf: Workflow) -> list[str]:
    """Per epoch with stale products: which upstream products were rebuilt since, and (a line of its own) the
    one command that rebuilds every stale product of the epoch and nothing else: the stale products built
    directly from a replaced input, forced, and everything downstream of them."""
    out = []
    for epoch in wf.epochs:
        mine = df[(df["epoch"] == epoch) & (df["state"] == "stale")]
        if mine.empty:
            continue
        names, commands = (_words(mine[column]) for column in ("staleInputs", "rebuild"))
        replaced = dict.fromkeys(n for words in names for n in words.split(", "))
        # each row's command forces its roots (the words after -R): all of them with the target `all`
        roots = dict.fromkeys(r for command in commands for r in shlex.split(command.split(" -R ", 1)[1]))
        out.append(
            f"{epoch}: {len(mine)} stale, built before {', '.join(replaced) or 'an input'} was rebuilt; to rebuild:"
        )
        if roots:
            out.append(f"  {rebuild_command('all', list(roots), df.attrs.get('config_path', paths.DEFAULT_CONFIG))}")
    return out


def render(df: pd.DataFrame, fmt: str, wf: Workflow, wide: bool = False) -> str:
    """tsv and json: one row per product (its verdict), then the roll-up rows (scope camera, spectrograph,
    run: step empty, camera the camera, spN or the epoch)."""
    if fmt in ("tsv", "json"):
        roll = rollup(df, wf.cameras)
        extra = pd.DataFrame(
            [dict.fromkeys(COLUMNS, "") | {"epoch": r.epoch, "camera": r.name, "verdict": r.verdict, "scope": r.scope}
             for r in roll.itertuples()],
            columns=[*COLUMNS, "scope"],
        )  # fmt: skip
        out = pd.concat([df.assign(scope="product"), extra], ignore_index=True)
        return out.to_csv(sep="\t", index=False) if fmt == "tsv" else out.to_json(orient="records", indent=1)
    return render_wide(df) if wide else render_compact(df, wf)


def render_wide(df: pd.DataFrame) -> str:
    """Camera x calibration grid per epoch, each state in words with its certification's range;
    fiberNorms is per arm, so it gets rows of its own."""
    cells = df.assign(
        cell=[f"{st} [{b[:10]}, {e[:10]})" if b else st for st, b, e in zip(df["status"], df["begin"], df["end"])]
    )
    grid = (
        cells.pivot_table(index=["epoch", "camera"], columns="step", values="cell", aggfunc="first", sort=False)
        .reindex(columns=list(STEP_NAMES))
        .fillna("")
    )
    return grid.to_string()


def summary(df: pd.DataFrame, wf: Workflow) -> str:
    """What was certified per epoch and camera, where, and where to look next: a few lines."""
    grid = camera_states(df, wf.cameras)
    collections = f"{wf.collections['calib']}, {wf.collections['bootstrap']}"
    lines = [f"pfscalib: certified in {wf.datastore} (collections {collections}):"]
    roll = rollup(df, wf.cameras)
    for epoch, v in wf.epochs.items():
        mine = roll[roll["epoch"] == epoch]
        run_verdict = mine[mine["scope"] == "run"]["verdict"].iloc[0]
        per_sg = ", ".join(f"{r.name} {r.verdict}" for r in mine[mine["scope"] == "spectrograph"].itertuples())
        head = f"  {epoch} [{v['begin'][:10]}, {(v.get('end') or 'inf')[:10]}): {run_verdict} ({per_sg});"
        done, parts = [], []
        for camera in wf.cameras:
            states = grid.loc[(epoch, camera)].items()
            # a stale product's words and command follow the epochs' lines (stale_notes)
            short = {"stale": STATES["stale"].short}
            bad = [
                f"{step} {short.get(state) or STATES[state].text.format(n='several', why='(pfscalib status --wide)')}"
                for step, state in states
                if not STATES[state].ok
            ]
            marked = grid.loc[(epoch, camera)].items()
            bad += [f"{step} {state}" for step, state in marked if state in ("warn", "accepted")]
            if bad:
                parts.append(f"{camera} {', '.join(bad)}")
            else:
                done.append(camera)
        if done:
            parts.insert(0, f"{' '.join(done)}: all {len(STEP_NAMES)} calibrations certified")
        lines.append(f"{head} {'; '.join(parts)}")
    lines.append(f"  ({', '.join(STEPS[s].certified_as for s in STEP_NAMES)})")
    lines += [f"  {note}" for note in stale_notes(df, wf)]  # what was rebuilt since, and the one command
    for epoch in wf.epochs:  # what the site lacked, so the products lack (n: linearity, IRP bad pixels)
        checked = json.loads(Path(paths.check(epoch)).read_text()) if Path(paths.check(epoch)).exists() else {}
        for camera, what in sorted(checked.get("lacking", {}).items()):
            lines.append(f"  {epoch} {camera}: built without site calibrations: {'; '.join(what)}")
    tree = "" if wf.workdir == "." else f"{wf.workdir}/"  # a site's tree (config workdir)
    qa = ", ".join(f"{tree}{paths.qa_dir(e)}" for e in wf.epochs)
    lines.append(f"QA pictures: {qa}; table: {tree}{paths.CERTIFICATIONS}")
    lines.append("Report: snakemake --report report.html    Status: pfscalib status")
    return "\n".join(lines) + "\n"


def main(config_path: str, fmt: str, wide: bool = False) -> int:
    wf = load([config_path])
    enter_workdir(wf)  # its results (the printed commands name the config as given)
    df = status_table(wf, config_path=config_path)
    text = render(df, fmt, wf, wide)
    print(text, end="" if text.endswith("\n") else "\n")
    return 0 if all_ok(df) else 1


def main_summary(config_path: str) -> int:
    wf = load([config_path])
    enter_workdir(wf)  # its results (the printed commands name the config as given)
    df = status_table(wf, config_path=config_path)
    print(summary(df, wf), end="")
    return 0 if all_ok(df) else 1
