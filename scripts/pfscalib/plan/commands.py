"""The shell command of every job, built from the settings and the selections; every argument quoted."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import shlex

from pfscalib.plan import paths
from pfscalib.plan.config import AUTO, Settings, epoch_order
from pfscalib.plan.contract import GuideCommand, JobRequest, Override, OwnCollections, PipetaskCommand, ScanRequest
from pfscalib.plan.steps import OFFSET_STEP, STEP_NAMES, STEPS
from pfscalib.plan.tables import Selections


@functools.cache  # the same repository, collections and options recur in every job's command
def shell_quote(arg: str) -> str:
    """shlex.quote, but "..." where that is equally safe, so queries read like the guide's."""
    if arg and "'" in arg and not any(c in arg for c in '"$`\\!'):
        return f'"{arg}"'
    return shlex.quote(arg)


def shell_join(argv: list[str]) -> str:
    return " ".join(shell_quote(a) for a in argv)


def guide_line(command: GuideCommand, prefix: str = "") -> str:
    """A guide command as a person would type it; a conditional one (or one with a prefix) as a comment
    line naming its condition. One line whatever the arguments hold (a comment ends at a newline)."""
    text = shell_join(command.argv).replace("\n", "\\n")
    if not prefix and not command.when:
        return text
    head = ", ".join(filter(None, [prefix, f"if {command.when}" if command.when else ""]))
    return f"# {head}: {text}"


def check_digest(argv: list[str]) -> str:
    """A check command's inputs (tables' selections, collections, prerequisites): its argv without --output."""
    return hashlib.sha256(json.dumps(argv).encode()).hexdigest()[:20]


class Commands:
    def __init__(self, settings: Settings, selections: Selections):
        self.settings = settings
        self.selections = selections

    def where(self, step: str, epoch: str, unit: str) -> str:
        """The -d data query: constrained instrument + visits (or profiles_run) + camera or arm."""
        if STEPS[step].profile_groups:
            query = f"profiles_run = '{self.selections.profiles_run(epoch, self.settings.mode(unit))}'"
        else:
            # PFS list syntax maps onto the query grammar: A..B:S is a range, ^ separates items
            visits = ", ".join(spec.replace("^", ", ") for spec in self.selections[(step, epoch, unit)].specs)
            query = f"instrument='{self.settings.instrument_name}' AND visit IN ({visits})"
        if STEPS[step].per_arm:
            spectrographs = ", ".join(sorted({c[1:] for c in self.settings.cameras_of(unit)}))
            return f"{query} AND arm='{unit}' AND spectrograph IN ({spectrographs})"
        return f"{query} AND arm='{unit[0]}' AND spectrograph={int(unit[1:])}"

    def pipetask(self, step: str, epoch: str, unit: str) -> PipetaskCommand:
        """The guide's `pipetask run`, without -j (the rule appends -j {threads})."""
        s = self.settings
        return PipetaskCommand(
            executable=s.executables["pipetask"],
            repo=s.datastore,
            instrument=s.config["instrument"],
            inputs=tuple(s.inputs(step)),
            output=self.chain(step, epoch, unit),
            pipeline=s.pipeline(step),
            where=self.where(step, epoch, unit),
            overrides=tuple(map(Override.parse, s.config_overrides(step, unit))),
            extra=tuple(s.setting(step, "extra_args", [])),
        )

    def pipetask_argv(self, step: str, epoch: str, unit: str) -> list[str]:
        return self.pipetask(step, epoch, unit).argv()

    def chain(self, step: str, epoch: str, unit: str) -> str:
        """The job's pipetask output collection (a CHAINED collection of its RUNs)."""
        return f"{self.settings.config['rerun']}/{epoch}/{step}/{unit}"

    def request(self, step: str, epoch: str, unit: str) -> JobRequest:
        """`pfscalib job` options: what to certify where, what to clean, and the job's files."""
        s, settings = STEPS[step], self.settings
        begin, end = settings.validity(step, epoch)
        auto = s.offset_target is not None and settings.spectral_offset(unit) == AUTO  # the proposal's, at run time
        accepted = settings.accepted(epoch, step, unit)
        return JobRequest(
            repo=settings.datastore,
            chain=self.chain(step, epoch, unit),
            dataset_type=s.product,
            calib=settings.calib_collection(step),
            instrument=settings.instrument_name,
            begin_date=begin,
            end_date=end or None,
            arm=unit[0],
            spectrograph=None if s.per_arm else int(unit[1:]),
            copy_as=s.certified_as if s.copies_product else None,
            clean=tuple(settings.clean(step)),
            step=step,
            epoch=epoch,
            visits=",".join(map(str, self.selections[(step, epoch, unit)].visits)),
            state=paths.state(step, epoch, unit),
            sentinel=paths.sentinel(step, epoch, unit),
            needs=tuple(settings.needs(step, epoch, unit)),
            offset_from=paths.offset_proposal(epoch, unit) if auto else None,
            offset_field=s.offset_target if auto else None,
            clean_collections=tuple(self.scan_collections(epoch, unit)) if auto else (),
            # the name define-profiles chose (the planned one or its fallback), at run time
            profiles_from=paths.profiles(epoch, settings.mode(unit)) if s.profile_groups else None,
            held=paths.held(step, epoch, unit),
            limits=settings.config.get("limits") or None,
            # only this job's command changes: adding an acceptance reruns only the held job
            accept=json.dumps(accepted, sort_keys=True) if accepted else None,
            log_root=tuple(settings.config["task_log_roots"]),
        )

    def job(self, step: str, epoch: str, unit: str) -> str:
        """The shell command of one job: pipetask (resumable) then certify+clean+sentinel, in one process;
        the pipetask part after `--` reads like the guide's command. No -j: the rule appends
        `-j {threads}`, so the command does not depend on threads and serves as the job's params rerun
        trigger."""
        job = ["pfscalib", "job", *self.request(step, epoch, unit).argv(), "--"]
        return shell_join(job + self.pipetask_argv(step, epoch, unit))

    def guide_comments(self, step: str, epoch: str, unit: str) -> str:
        """What the job does after pipetask (certify, clean) as the guide's commands, from the same
        request its command carries: comment lines before its shell command, which `snakemake -n -p`
        prints and bash skips."""
        return "".join(guide_line(c, "then") + "\n" for c in self.request(step, epoch, unit).guide())

    def guide_job(self, step: str, epoch: str, unit: str, threads: int) -> list[str]:
        """One job as the guide's commands: its pipetask run with -j, then its certification and cleaning
        (a value the job sets at run time, as a comment)."""
        request = self.request(step, epoch, unit)
        lines = [shell_join([*self.pipetask_argv(step, epoch, unit), "-j", str(threads)])]
        if request.offset_field is not None:
            lines.append(
                f"#   with -c {shell_quote(request.offset_field.text())}=<the proposal in {request.offset_from}>"
            )
        return lines + [guide_line(c) for c in request.guide()]

    # ------------------------------------------------------------------ spectralOffset: auto
    def offset_chain(self, epoch: str, camera: str, offset: int | None = None) -> str:
        """Output chain of the ISR of the camera's bootstrap pair (offset None) or of one scan run."""
        base = f"{self.settings.config['rerun']}/{epoch}/{OFFSET_STEP}"
        return f"{base}Isr/{camera}" if offset is None else f"{base}Scan/{camera}/{offset}"

    def scan_collections(self, epoch: str, camera: str) -> list[str]:
        """Globs of the camera's ISR and scan collections, removed once its bootstrap is certified."""
        if not self.settings.config.get("cleanup", True):
            return []
        return [f"{self.offset_chain(epoch, camera)}*", f"{self.offset_chain(epoch, camera, 0).rsplit('/', 1)[0]}/*"]

    def offset_pipetask(self, epoch: str, camera: str, offset: int | None) -> PipetaskCommand:
        """`pipetask run` of the step's ISR labels on its visits (offset None), or of its scanned label at one
        offset on the ISR's output, with the step's -c overrides of those labels."""
        s, step = self.settings, STEPS[OFFSET_STEP]
        labels = step.scan_prepare if offset is None else (step.scan_label,)
        overrides = [o for o in map(Override.parse, s.config_overrides(OFFSET_STEP, camera)) if o.label in labels]
        if offset is not None:
            assert step.offset_target is not None
            overrides.append(step.offset_target.with_value(offset))
        return PipetaskCommand(
            executable=s.executables["pipetask"],
            repo=s.datastore,
            instrument=s.config["instrument"],
            inputs=tuple(s.inputs(OFFSET_STEP)) if offset is None else (self.offset_chain(epoch, camera),),
            output=self.offset_chain(epoch, camera, offset),
            pipeline=f"{s.pipeline(OFFSET_STEP)}#{','.join(labels)}",
            where=self.where(OFFSET_STEP, epoch, camera),
            overrides=tuple(overrides),
        )

    def offset_pipetask_argv(self, epoch: str, camera: str, offset: int | None) -> list[str]:
        return self.offset_pipetask(epoch, camera, offset).argv()

    def offset_scan_pipetask(self, epoch: str, camera: str) -> PipetaskCommand:
        """The scanned label's query, inputs and -c overrides for the scan in one process: it writes nothing
        (no -o), the offset is set per point."""
        command = self.offset_pipetask(epoch, camera, 0)
        return dataclasses.replace(command, output=None, overrides=command.overrides[:-1])

    def offset_isr(self, epoch: str, camera: str) -> str:
        state = paths.state(f"{OFFSET_STEP}Isr", epoch, camera)
        wrapper = ["pfscalib", "pipetask", "--state", state, "--done", paths.offset_isr(epoch, camera), "--"]
        return shell_join(wrapper + self.offset_pipetask_argv(epoch, camera, None))

    def _scan_options(self, epoch: str, camera: str) -> list[str]:
        s = self.settings
        label = STEPS[OFFSET_STEP].scan_label
        return ScanRequest(
            repo=s.datastore, instrument=s.instrument_name, epoch=epoch, camera=camera, label=label
        ).argv()

    def offset_scan(self, epoch: str, camera: str, offset: int) -> str:
        """One grid point (per_offset): pipetask into its own RUN, then its log's numbers."""
        argv = ["pfscalib", "scan-offset", *self._scan_options(epoch, camera), "--offset", str(offset)]
        for root in self.settings.config["task_log_roots"]:  # the numbers are read from the task's log
            argv += ["--log-root", root]
        argv += ["--state", paths.state(f"{OFFSET_STEP}Scan", epoch, f"{camera}/{offset}")]
        argv += ["--result", paths.offset_scan(epoch, camera, str(offset)), "--"]
        return shell_join(argv + self.offset_pipetask_argv(epoch, camera, offset))

    def offset_scan_camera(self, epoch: str, camera: str) -> str:
        """Every grid point in one process (per_camera)."""
        argv = ["pfscalib", "scan-offsets", *self._scan_options(epoch, camera)]
        # one argument with its `=`: argparse takes a separate "-150,-136,..." for an option, not a value
        argv += [f"--offsets={','.join(map(str, self.settings.offset_grid(camera)))}"]
        argv += ["--result", paths.offset_scan(epoch, camera, "all"), "--"]
        return shell_join(argv + self.offset_scan_pipetask(epoch, camera).argv())

    def scan_results(self, epoch: str, camera: str) -> list[str]:
        if self.settings.offset_search["jobs"] == "per_camera":
            return [paths.offset_scan(epoch, camera, "all")]
        return [paths.offset_scan(epoch, camera, str(o)) for o in self.settings.offset_grid(camera)]

    def propose(self, epoch: str, camera: str) -> str:
        search = {**self.settings.offset_search, "capture": self.settings.capture_range(camera)}
        argv = ["pfscalib", "propose-offset", "--epoch", epoch, "--camera", camera]
        argv += ["--search", json.dumps(search, sort_keys=True)]
        argv += ["--output", paths.offset_proposal(epoch, camera), "--plot", paths.offset_plot(epoch, camera)]
        return shell_join(argv + self.scan_results(epoch, camera))

    def define_profiles_argv(self, epoch: str, mode: str) -> list[str]:
        """The guide's defineFiberProfilesInputs.py of the epoch and mode (brn, m)."""
        s, name = self.settings, self.selections.profiles_run(epoch, mode)
        argv = [s.executables["defineFiberProfilesInputs"], s.datastore, s.instrument_name, name]
        for bright, dark in self.selections.profile_groups(epoch, mode):
            argv += ["--bright", bright] + (["--dark", dark] if dark else [])
        return argv

    def define_profiles(self, epoch: str, mode: str) -> str:
        """One defineFiberProfilesInputs.py per epoch and mode (brn, m): the mode's groups as its profiles_run."""
        s, name = self.settings, self.selections.profiles_run(epoch, mode)
        groups = self.selections.profile_groups(epoch, mode)
        argv = self.define_profiles_argv(epoch, mode)
        wrapper = ["pfscalib", "define-profiles", "--repo", s.datastore, "--instrument", s.instrument_name]
        wrapper += ["--name", name, "--fallback", self.selections.profiles_run_fallback(epoch, mode)]
        wrapper += ["--groups", json.dumps([list(g) for g in groups])]
        return shell_join([*wrapper, "--output", paths.profiles(epoch, mode), "--", *argv])

    def check(self, epoch: str, output: str) -> str:
        """One check of every step's visits for the epoch (one registry open, not one per step)."""
        s = self.settings
        payload = {
            step: {
                "table": s.table(step),
                "collections": s.site_inputs(step),
                "validity": list(s.validity(step, epoch)),
                # the table's specs with their rows, not the expanded visits: one argument stays far
                # below the kernel's 128 kB limit on a 16-camera site
                "units": {
                    unit: [list(pair) for pair in zip(selection.specs, selection.spec_lines)]
                    for unit in s.units(step)
                    for selection in [self.selections[(step, epoch, unit)]]
                },
            }
            for step in STEP_NAMES
        }
        argv = ["pfscalib", "check-visits", "--repo", s.datastore, "--instrument", s.instrument_name]
        argv += ["--epoch", epoch, "--selection", json.dumps(payload, sort_keys=True)]
        after = [a for dataset_type in s.config.get("prerequisites", []) for a in ("--prerequisite", dataset_type)]
        site = {c: list(s.site_calibrations(c)) for c in s.cameras if s.site_calibrations(c)}
        optional = {c: [list(o) for o in s.optional_site_calibrations(c)] for c in site}
        if site:  # looked up per visit, in each step's inputs (pfscalib.job.checks.site_calibration_problems)
            wanted = {"cameras": site, "optional": {c: o for c, o in optional.items() if o}}
            after += ["--site-calibrations", json.dumps(wanted, sort_keys=True)]
        after += self.own_collections()
        digest = check_digest(argv + after)
        return shlex.join([*argv, "--output", output, *after, "--inputs-digest", digest])

    def check_inputs_digest(self, epoch: str) -> str:
        """What the epoch's check checked (its command but the output path): recorded in the check's
        output, compared by the run's onstart (pfscalib.plan.preflight.recheck_edited_epochs)."""
        return shlex.split(self.check(epoch, paths.check(epoch)))[-1]

    def register(self) -> str:
        argv = ["pfscalib", "register-dataset-types", "--repo", self.settings.datastore, "--output", paths.REGISTRY]
        for step in STEP_NAMES:
            argv += ["-p", self.settings.pipeline(step)]
            overrides = map(Override.parse, self.settings.step_config(step))
            argv += [a for o in overrides if o.field.startswith("connections.") for a in ("-c", o.text())]
        return shell_join(argv + self.own_collections())

    def own_collections(self) -> list[str]:
        """The options naming the workflow's own collections (check-visits and register-dataset-types
        check them; register makes them)."""
        outside = sorted({self.settings.calib_collection(s) for s in STEP_NAMES if STEPS[s].outside_calib_chain})
        return OwnCollections(
            rerun=self.settings.config["rerun"],
            calib_chain=self.settings.collections["calib"],
            calib_collection=tuple(self.settings.own_calib_collections()),
            collection=tuple(outside),
        ).argv()

    def qa(self, sentinels: list[str], outdir: str) -> str:
        s = self.settings
        argv = ["pfscalib", "qa", "--", "--repo", s.datastore, "--outdir", outdir, *self._limits()]
        for step in STEP_NAMES:
            for unit in s.all_units(step):
                if s.role(step, unit) != "build":
                    argv += ["--not-built", f"{step}:{unit}:{s.role_words(step, unit)}"]
        return shell_join(argv + sentinels)

    def drift(self, sentinels: list[str], outdir: str) -> str:
        epochs = [a for e in epoch_order(self.settings.epochs) for a in ("--drift", e)]  # as the trend reads them
        trend = self.settings.config.get("trend")  # the bands status judges with (pfscalib.job.trend)
        bands = ["--trend", json.dumps(trend, sort_keys=True)] if trend else []
        return shell_join(["pfscalib", "qa", "--", "--outdir", outdir, *self._limits(), *bands, *epochs, *sentinels])

    def _limits(self) -> list[str]:
        """The config's limits file (QA's units and the drift panels' bounds), if it names one."""
        limits = self.settings.config.get("limits")
        return ["--limits", str(limits)] if limits else []

    def overview(self, certifications: str, quality: str, output: str) -> str:
        """The report's first page (pfscalib.job.overview) from the status and quality tables."""
        s = self.settings
        argv = ["pfscalib", "qa", "--", "--overview", output, "--certifications", certifications, "--quality", quality]
        argv += ["--cameras", ",".join(s.cameras), "--calib-chain", s.collections["calib"]]
        argv += [a for step in STEP_NAMES for a in ("--collection", f"{step}={s.calib_collection(step)}")]
        for epoch in s.epochs:
            begin, end = s.epochs[epoch].get("begin", ""), s.epochs[epoch].get("end") or ""
            argv += ["--epoch", f"{epoch}={begin}={end}"]
        return shell_join(argv)

    @staticmethod
    def quality_table(sentinels: list[str], output: str) -> str:
        argv = ["pfscalib", "qa", "--", "--table", output, "--held-root", paths.HELD_ROOT]
        return shell_join([*argv, *sentinels])

    @staticmethod
    def status(config_file: str) -> str:
        return shell_join(["pfscalib", "status", "--config", config_file, "--format", "tsv"])

    def demo(self) -> str:
        demo_epochs = self.settings.config.get("demo", {}).get("epochs") or {}
        argv = ["python", "-m", "pfscalib.demo.make_repo", self.settings.datastore]
        argv += ["--cameras", ",".join(self.settings.cameras)]
        if demo_epochs:
            argv += ["--epochs", ",".join(f"{k}={v}" for k, v in demo_epochs.items())]
        demo = self.settings.config.get("demo", {})
        if demo.get("spectral_offsets"):
            argv += ["--spectral-offsets", ",".join(f"{k}={v:g}" for k, v in demo["spectral_offsets"].items())]
        if demo.get("unlit_arcs"):
            argv += ["--unlit-arcs", ",".join(demo["unlit_arcs"])]
        for fault in self.settings.config.get("demo", {}).get("faults", []):
            argv += ["--fault", fault]
        return shlex.join(argv)
