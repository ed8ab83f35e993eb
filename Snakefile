# PFS calibration workflow: bias -> dark -> flat -> bootstrap -> detectorMap -> fiberProfiles -> fiberNorms.
# This file only wires; logic lives in scripts/pfscalib (see README.md).
from snakemake.utils import min_version

min_version("9.27.1")  # the pinned Snakemake pfscalib.internals.snakemake is checked against


report: "report/workflow.rst"


# The demo config is the default; a --configfile replaces it whole (no deep merge of the demo's epochs).
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


include: "rules/common.smk"


# One tree per datastore and rerun (config workdir; the demo's is here): a site's run never mixes with it.
workdir: WF.workdir


include: "rules/demo.smk"
include: "rules/checks.smk"
include: "rules/fiber_profiles_inputs.smk"
include: "rules/offsets.smk"
include: "rules/steps.smk"
include: "rules/qa.smk"


# Before the first job of a real run (Snakemake skips onstart in a dry run): what the run needs besides
# the registry, each problem one line (pfscalib.plan.preflight).
onstart:
    preflight_environment()


# A successful run forgets the states of the jobs Snakemake recorded as finished (those it marks
# incomplete keep theirs: their rerun recognises what they did).
onsuccess:
    forget_finished_jobs()


# A failed run says in one line which products the quality gate held, and why.
onerror:
    report_held()


rule all:
    default_target: True
    input:
        WF.all_sentinels(),
        report_targets(),
