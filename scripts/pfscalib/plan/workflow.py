"""What the rules ask: targets, each job's inputs, threads and command. Config + visit tables -> validated
selections -> per-job commands, with no Butler, so `snakemake -n -p` works without a datastore and all of
it is unit-tested."""

from __future__ import annotations

from collections.abc import Mapping

from pfscalib.plan import paths
from pfscalib.plan.commands import Commands, shell_join
from pfscalib.plan.config import ConfigError, Settings
from pfscalib.plan.disk import Disk, DiskModelError
from pfscalib.plan.steps import STEP_NAMES, STEPS
from pfscalib.plan.tables import Selections

__all__ = ["ConfigError", "Workflow"]

SLURM_SITE_RESOURCES = {
    "PARTITION": "slurm_partition",
    "ACCOUNT": "slurm_account",
    "QOS": "qos",
    "CONSTRAINT": "constraint",
}


class Workflow(Settings):
    """The validated configuration with every job's visits and commands."""

    def __init__(self, config: dict, source: str = "config"):
        super().__init__(config, source)
        self.selections = Selections(self)
        self.commands = Commands(self, self.selections)
        self.disk = Disk(self, self.selections)
        # asked once per job (per-arm inputs, QA): computed once
        self._epoch_sentinels = {
            epoch: [paths.sentinel(s, epoch, u) for s in STEP_NAMES for u in self.units(s)] for epoch in self.epochs
        }

    def profiles_run(self, epoch: str, mode: str) -> str:
        return self.selections.profiles_run(epoch, mode)

    def all_sentinels(self) -> list[str]:
        return [p for e in self.epochs for p in self.epoch_sentinels(e)]

    def epoch_sentinels(self, epoch: str) -> list[str]:
        return self._epoch_sentinels[epoch]

    def job_threads(self, step: str, epoch: str, unit: str) -> int:
        """pipetask -j and SLURM --cpus-per-task: the configured threads, but no more than the job's
        widest stage can use (one quantum per visit and camera), e.g. 2 for a bootstrap, not 16."""
        width = len(self.selections[(step, epoch, unit)].visits) * len(self.cameras_of(unit))
        return max(1, min(int(self.setting(step, "threads", 1)), width))

    def guide(self, cores: int) -> list[str]:
        """The whole run as the guide's command sequence in run order (epoch by epoch, step by step, as
        the guide builds): defineFiberProfilesInputs.py before the steps that select by profiles_run, each
        job's pipetask run (-j its threads, at most the run's cores, as Snakemake caps them), certification
        and cleaning (`pfscalib plan --guide`)."""
        lines: list[str] = []
        for epoch in self.epochs:
            lines.append(f"# ---- epoch {epoch}")
            for step in STEP_NAMES:
                if STEPS[step].profile_groups:
                    lines += [shell_join(self.commands.define_profiles_argv(epoch, m)) for m in self.modes()]
                for unit in self.units(step):
                    lines.append(f"# {step} {unit}")
                    lines += self.commands.guide_job(step, epoch, unit, min(cores, self.job_threads(step, epoch, unit)))
        return lines

    def disk_mb(self, step: str, epoch: str, unit: str) -> int:
        """Snakemake's disk_mb of a job: the MB it writes into the datastore (pfscalib.plan.disk). 0 where the
        pipeline cannot be read (a dry run without the stack): no budget can be set then, see
        budget_problem."""
        try:
            return self.disk.job(step, epoch, unit).disk_mb
        except DiskModelError:
            return 0

    def budget_problem(self, budget_mb: int | None) -> str | None:
        """One line if a --resources disk_mb budget is set and a job alone exceeds it (or cannot be
        predicted), else None."""
        if budget_mb is None:
            return None
        try:
            return self.disk.too_large(budget_mb)
        except DiskModelError as error:
            return str(error)

    @staticmethod
    def site_resources(environ: Mapping[str, str]) -> dict[str, str]:
        """SLURM resources of this site from PFSCALIB_SLURM_PARTITION/_ACCOUNT/_QOS/_CONSTRAINT; absent
        variables add nothing (the plugin would pass an empty --qos '')."""
        return {
            resource: environ[f"PFSCALIB_SLURM_{key}"]
            for key, resource in SLURM_SITE_RESOURCES.items()
            if environ.get(f"PFSCALIB_SLURM_{key}")
        }

    @property
    def demo_enabled(self) -> bool:
        return bool(self.config.get("demo", {}).get("enabled"))
