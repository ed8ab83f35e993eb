"""Visit-selection tables (TSV): read and validated, then turned into each job's visits."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

import pandas as pd

from pfscalib.plan import paths
from pfscalib.plan.config import ConfigError, Settings
from pfscalib.plan.schema import schema_error_line, schema_path, schema_valid
from pfscalib.plan.steps import KIND_WORDS, STEP_NAMES, STEPS
from pfscalib.plan.visits import MAX_VISITS, parse_visit_list

NUMBER_WORDS = {1: "one", 2: "two", 3: "three", 4: "four"}
GROUP_ROLE_WORDS = {"bright": "", "dark": " dark"}  # "group 2", "group 2 dark" in messages


@dataclasses.dataclass(frozen=True)
class Row:
    """One table row, as the user wrote it."""

    line: int  # as an editor shows it: 1 is the header
    epoch: str
    cameras: tuple[str, ...]  # cameras (b1) or arms (b); empty: every camera
    visits: tuple[int, ...]
    spec: str  # the visits column (PFS list syntax)
    group: str = ""
    role: str = ""

    def covers(self, unit: str) -> bool:
        """Whether the row selects visits for a camera (b1) or, for a per-arm step, an arm (b)."""
        return not self.cameras or any(c.startswith(unit) or c == unit[0] for c in self.cameras)


@dataclasses.dataclass(frozen=True)
class Selection:
    """Visits of one step and epoch for one camera (or arm), plus fiber-profile groups."""

    visits: tuple[int, ...]
    groups: tuple[tuple[str, str], ...] = ()  # (bright LIST, dark LIST) per group, PFS list syntax
    specs: tuple[str, ...] = ()  # the table's visit specs, for compact -d queries
    lines: tuple[int, ...] = ()  # the table row of each visit (as an editor numbers it), for messages
    spec_lines: tuple[int, ...] = ()  # the table row of each spec


def read_lines(path: str, where: str) -> tuple[list[str], list[dict[str, Any]]]:
    """The header's columns and every row as {column: value, "line": N}, N as an editor numbers lines
    (comment and blank lines count). Read line by line, not by a CSV parser, so that each spreadsheet
    habit gets its own message: a trailing tab, a comma- or space-separated table, two rows on one line."""
    if not Path(path).is_file():
        raise ConfigError(where, f"table {path} does not exist")
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(path, f"not UTF-8 text (byte {exc.start}); save it as UTF-8 tab-separated text") from None
    # split at \n only: str.splitlines also splits at form feeds and Unicode separators, which editors
    # do not count as lines
    lines = (line.removesuffix("\r") for line in text.split("\n"))
    numbered = [(n, line.split("#", 1)[0]) for n, line in enumerate(lines, start=1)]
    numbered = [(n, line) for n, line in numbered if line.strip()]
    if not numbered:
        raise ConfigError(path, "table is empty (expected a header line: epoch<TAB>visits...)")
    header_line, header = numbered[0]
    if "\t" not in header:
        if "," in header:
            raise ConfigError(f"{path}: row {header_line}", "the table is comma-separated; use tabs")
        if len(header.split()) > 1:
            raise ConfigError(f"{path}: row {header_line}", "columns are separated by spaces; use tabs")
    columns = [c.strip() for c in header.split("\t")]
    while columns and not columns[-1]:  # a spreadsheet's trailing tab
        columns.pop()
    if "" in columns:
        raise ConfigError(f"{path}: row {header_line}", f"column {columns.index('') + 1} of the header has no name")
    repeated = sorted({c for c in columns if columns.count(c) > 1})
    if repeated:
        raise ConfigError(f"{path}: row {header_line}", f"column(s) {', '.join(map(repr, repeated))} appear twice")
    rows = []
    for n, line in numbered[1:]:
        fields = [f.strip() for f in line.split("\t")]
        while len(fields) > len(columns) and not fields[-1]:
            fields.pop()
        if len(fields) > len(columns):
            raise ConfigError(
                f"{path}: row {n}",
                f"{len(fields)} fields, but the header names {len(columns)} columns ({', '.join(columns)}): "
                "two rows on one line, or a tab inside a value?",
            )
        rows.append({**dict(zip(columns, fields + [""] * (len(columns) - len(fields)))), "line": n})
    return columns, rows


def check_columns(path: str, step: str, columns: list[str]) -> None:
    for column in ("epoch", "visits"):
        if column not in columns:
            raise ConfigError(path, f"missing column {column!r} (the header names: {', '.join(columns)})")
    allowed = STEPS[step].table_columns
    extra = [c for c in columns if c not in allowed]
    if extra:
        raise ConfigError(
            path, f"unexpected column(s) {', '.join(map(repr, extra))} (allowed: {', '.join(sorted(allowed))})"
        )


def read_table(path: str, step: str, epochs: dict, cameras: list[str], source: str = "config") -> list[Row]:
    """Read and validate one visit-selection table (source: the config file that names it)."""
    from snakemake.exceptions import WorkflowError
    from snakemake.utils import validate

    columns, records = read_lines(path, f"{source}: visits.{step}")
    check_columns(path, step, columns)
    if not records:
        raise ConfigError(path, "table has no rows")
    try:  # one validation of the whole table; only on failure look for the row to name
        validate(pd.DataFrame(records, columns=columns), schema_path("visits"), set_default=False)
        schema_ok = True
    except WorkflowError:
        schema_ok = False
    rows = []
    for row in records:
        line = row.pop("line")
        where = f"{path}: row {line}"
        if not schema_ok:
            record = {k: v for k, v in row.items() if v != "" or k in ("epoch", "visits")}
            if not schema_valid(record, schema_path("visits")):
                raise ConfigError(where, schema_error_line(record, schema_path("visits")))
        if row["epoch"] not in epochs:
            raise ConfigError(where, f"epoch {row['epoch']!r} is not in config epochs ({', '.join(epochs)})")
        try:
            visits = parse_visit_list(row["visits"])
        except ValueError as exc:
            raise ConfigError(f"{where} (column visits)", str(exc)) from None
        row_cameras = tuple(c for c in (row.get("cameras") or "").split(",") if c)
        unknown = [c for c in row_cameras if c not in cameras and c not in {x[0] for x in cameras}]
        if unknown:
            raise ConfigError(
                f"{where} (column cameras)",
                f"camera(s) {', '.join(unknown)} not in config cameras ({', '.join(cameras)}) or their arms",
            )
        if STEPS[step].profile_groups and (not row.get("group") or not row.get("role")):
            raise ConfigError(where, f"{step} rows need a group number and a role (bright or dark)")
        rows.append(
            Row(
                line, row["epoch"], row_cameras, tuple(visits), row["visits"], row.get("group", ""), row.get("role", "")
            )
        )
    return rows


def profile_groups(path: str, step: str, rows: list[Row]) -> tuple[tuple[str, str], ...]:
    """(bright LIST, dark LIST) per group of one epoch and camera, groups numbered 0..N-1."""
    groups: dict[int, dict[str, list[str]]] = {}
    for row in rows:
        groups.setdefault(int(row.group), {"bright": [], "dark": []})[row.role].append(row.spec)
    numbers = sorted(groups)
    if numbers != list(range(len(numbers))):
        raise ConfigError(path, f"{step} groups must be numbered 0..N-1, got {numbers}")
    for n in numbers:
        if not groups[n]["bright"]:
            raise ConfigError(path, f"{step} group {n} has no bright visits")
    with_dark = [n for n in numbers if groups[n]["dark"]]
    if with_dark and len(with_dark) != len(numbers):
        raise ConfigError(path, f"either every {step} group has dark visits or none has")
    return tuple(("^".join(groups[n]["bright"]), "^".join(groups[n]["dark"])) for n in numbers)


class Selections:
    """Every job's visits, from every step's table: selections[(step, epoch, unit)]."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._by_job: dict[tuple[str, str, str], Selection] = {}
        self._modes: dict[tuple[str, str], tuple[tuple[str, str], ...]] = {}
        for step in STEP_NAMES:
            path = settings.table(step)
            self._select(step, path, read_table(path, step, settings.epochs, settings.cameras, settings.source))

    def __getitem__(self, job: tuple[str, str, str]) -> Selection:
        return self._by_job[job]

    def _select(self, step: str, path: str, rows: list[Row]) -> None:
        s = STEPS[step]
        self._check_rows_apply(step, path, rows)
        seen: dict[tuple[str, int], int] = {}  # (unit, visit) -> line that selected it
        for epoch in self.settings.epochs:
            for unit in self.settings.units(step):
                mine = [r for r in rows if r.epoch == epoch and r.covers(unit)]
                visits: list[int] = []
                lines: list[int] = []
                for row in mine:
                    for visit in row.visits:
                        previous = seen.setdefault((unit, visit), row.line)
                        if previous != row.line:
                            raise ConfigError(
                                f"{path}: row {row.line}", f"visit {visit} is already selected in row {previous}"
                            )
                        visits.append(visit)
                        lines.append(row.line)
                if len(visits) > MAX_VISITS:  # one job's --visits must stay one command-line argument
                    raise ConfigError(
                        path, f"{len(visits):,} visits for epoch {epoch} and {unit}, more than {MAX_VISITS:,} in a job"
                    )
                if not visits:
                    raise ConfigError(
                        path, f"no visits for epoch {epoch} and {'arm' if s.per_arm else 'camera'} {unit}"
                    )
                if s.exact_kinds and len(visits) != len(s.exact_kinds):
                    count = NUMBER_WORDS.get(len(s.exact_kinds), str(len(s.exact_kinds)))
                    roles = " and ".join(KIND_WORDS[k] for k in s.exact_kinds)
                    raise ConfigError(
                        path,
                        f"{step} needs exactly {count} visits ({roles}) for epoch {epoch} camera {unit}, "
                        f"got {len(visits)}",
                    )
                specs, spec_lines = tuple(r.spec for r in mine), tuple(r.line for r in mine)
                self._by_job[(step, epoch, unit)] = Selection(tuple(visits), (), specs, tuple(lines), spec_lines)
            if s.profile_groups:
                self._mode_groups(step, path, epoch, rows)

    def _check_rows_apply(self, step: str, path: str, rows: list[Row]) -> None:
        """A row may name only cameras (or arms) the step is built for: bias visits for n1 are a mistake."""
        settings = self.settings
        for row in rows:
            for entry in row.cameras:
                if STEPS[step].per_arm:
                    units = [entry[0]]
                else:
                    units = settings.cameras_of(entry) if len(entry) == 1 else [entry]
                if not any(settings.role(step, u) == "build" for u in units):
                    raise ConfigError(
                        f"{path}: row {row.line} (column cameras)",
                        f"{step} is not built for {entry}: {settings.role_words(step, units[0])}",
                    )

    def _mode_groups(self, step: str, path: str, epoch: str, rows: list[Row]) -> None:
        """One profiles_run per epoch and mode (brn, m): the groups of the rows of the mode's cameras, which
        every camera of the mode must get completely (each group's bright, and dark where the mode has any)."""
        for mode in self.settings.modes():
            cameras = [c for c in self.settings.units(step) if self.settings.mode(c) == mode]
            if not cameras:
                continue
            mine = [r for r in rows if r.epoch == epoch and any(r.covers(c) for c in cameras)]
            groups = profile_groups(f"{path}: epoch {epoch}, mode {mode}", step, mine)
            self._modes[(epoch, mode)] = groups
            wanted = [
                (n, role) for n, pair in enumerate(groups) for role, spec in zip(("bright", "dark"), pair) if spec
            ]
            for camera in cameras:
                own = {(int(r.group), r.role) for r in mine if r.covers(camera)}
                lacking = [f"group {n}{GROUP_ROLE_WORDS[role]}" for n, role in wanted if (n, role) not in own]
                if lacking:
                    raise ConfigError(
                        path,
                        f"epoch {epoch}: camera {camera} lacks {', '.join(lacking)} of mode {mode}'s fibre-profile "
                        "groups (give it rows, or name its arm in the cameras column)",
                    )
            self._check_same_groups(path, epoch, mode, cameras, mine)
            for camera in cameras:
                job = (step, epoch, camera)
                self._by_job[job] = dataclasses.replace(self._by_job[job], groups=groups)

    @staticmethod
    def _check_same_groups(path: str, epoch: str, mode: str, cameras: list[str], rows: list[Row]) -> None:
        """Every camera of a mode gets the same visits in each group: the epoch's profiles_run of the mode holds
        one set of groups, and every camera's fiberProfiles job is fitted with all of them (a group that
        differs per camera would fit r1 with b1's visits too)."""

        def groups_of(camera: str) -> dict[tuple[int, str], tuple[list[int], list[int]]]:
            out: dict[tuple[int, str], tuple[list[int], list[int]]] = {}
            for row in rows:
                if row.covers(camera):
                    visits, lines = out.setdefault((int(row.group), row.role), ([], []))
                    visits.extend(row.visits)
                    lines.append(row.line)
            return out

        first, reference = cameras[0], groups_of(cameras[0])
        for camera in cameras[1:]:
            own = groups_of(camera)
            for key in sorted(set(own) | set(reference)):
                mine, theirs = own.get(key, ([], [])), reference.get(key, ([], []))
                if sorted(mine[0]) != sorted(theirs[0]):
                    n, role = key
                    lines = sorted(set(mine[1]) | set(theirs[1]))
                    raise ConfigError(
                        f"{path}: row {lines[0]}",
                        f"epoch {epoch}: group {n}{GROUP_ROLE_WORDS[role]} has other visits for {camera} than for "
                        f"{first} (rows {', '.join(map(str, lines))}); the epoch's profiles_run of mode {mode} holds "
                        "one set of groups for all its cameras: give every camera the same group rows",
                    )

    def profile_groups(self, epoch: str, mode: str) -> tuple[tuple[str, str], ...]:
        """The (bright, dark) groups of an epoch's profiles_run of one mode (brn or m)."""
        return self._modes[(epoch, mode)]

    def profiles_run(self, epoch: str, mode: str) -> str:
        """The planned name, the one in the commands: <epoch>_<mode>, as PFS names them (run18_brn, run18_m);
        once defined with other groups (the table was edited since), <epoch>_<mode>_<hash of the groups>: a
        new, still readable profiles_run. Stable across runs (the record keeps it as "planned"), so a job's
        command does not change when the definition fell back to profiles_run_fallback's name, which the
        define-profiles record holds and the jobs read at run time (paths.profiles)."""
        groups = [list(g) for g in self.profile_groups(epoch, mode)]
        record = Path(paths.profiles(epoch, mode))
        name = f"{epoch}_{mode}"
        if record.is_file():
            previous = json.loads(record.read_text())
            if previous.get("groups") == groups:
                return previous.get("planned", previous["profiles_run"])
            digest = hashlib.sha1(json.dumps(groups).encode()).hexdigest()[:6]
            name = f"{name}_{digest}"
        return name

    def profiles_run_fallback(self, epoch: str, mode: str) -> str:
        """The name defined instead when the planned one is taken by another definition (other groups or
        roles: the observatory's `run18_brn` is shared with everyone): prefixed with the rerun's user, as
        drp_doc use.rst names a user's subset. The rerun is u/<user>/...; another rerun gives its words."""
        rerun = self.settings.config["rerun"].strip("/")
        parts = rerun.split("/")
        user = parts[1] if len(parts) > 1 and parts[0] == "u" else rerun.replace("/", "_")
        return f"{user}_{self.profiles_run(epoch, mode)}"
