# defineFiberProfilesInputs.py: the epoch's bright/dark groups of one mode (brn: b, r, n; m) become one
# profiles_run, which every step with profile groups (fiberProfiles) of the mode's cameras selects by.
# Names are shared with the observatory (drp_doc use.rst: run18_brn): `pfscalib define-profiles` reuses
# <epoch>_<mode> only for an identical definition (groups and roles), else defines <user>_<epoch>_<mode>;
# its output records the name, which the steps' jobs read at run time (`pfscalib job --profiles-from`).


rule fiberProfilesInputs:
    input:
        checked(),
        # After the registration, never beside it: on PostgreSQL, registering a dataset type creates its
        # tags table with a foreign key to profiles_run, whose rows this job inserts, and the two
        # transactions' locks deadlock (bench/README: one season run lost fiberProfiles' tags table so).
        # ancient: an order, not a reason to rerun.
        ancient(paths.REGISTRY),
    output:
        paths.profiles("{epoch}", "{mode}"),
    log:
        paths.log("{epoch}", "fiberProfilesInputs", "{mode}"),
    benchmark:
        paths.benchmark("{epoch}", "fiberProfilesInputs", "{mode}")
    priority: step_priority("detectorMap")  # all of the epoch's fiberProfiles jobs wait for it
    localrule: True
    conda:
        "../envs/pfscalib.yaml"
    resources:
        disk_mb=0,  # registry rows or files outside the datastore: not Snakemake's 1000 MB default
    params:
        # an edited group defines a new profiles_run: reruns this job and the steps behind it
        cmd=rerun_trigger(lambda wildcards: WF.commands.define_profiles(wildcards.epoch, wildcards.mode)),
    shell:
        "{params.cmd} > {log} 2>&1"
