# Before any pipetask job: each step's visits exist, have the right observation type and raws
# (one job per epoch: one registry open for all seven tables); then every dataset type is registered.


@declared
def check_command(wildcards, output):
    # Takes `output` on purpose: not a params rerun trigger. A re-run check would make Snakemake 9.27
    # skip the rerun test of every job behind its ancient() marker (needrun jobs "mask" their
    # dependants, and the mask is not undone across ancient edges), so an edited table would not
    # rerun its own jobs. Edited visits are checked by pipetask itself.
    return WF.commands.check(wildcards.epoch, output[0])


rule check_visits:
    conda:
        "../envs/pfscalib.yaml"
    input:
        repo_marker(),
    output:
        paths.check("{epoch}"),
    log:
        paths.log("{epoch}", "check_visits"),
    benchmark:
        paths.benchmark("{epoch}", "check_visits")
    params:
        cmd=check_command,
    priority: 100
    localrule: True
    shell:
        "{params.cmd} 2> {log}"


# Registering dataset types writes to the registry: only after every table passed its checks.
rule register_dataset_types:
    conda:
        "../envs/pfscalib.yaml"
    input:
        [checked(epoch) for epoch in WF.epochs],
    output:
        paths.REGISTRY,
    log:
        paths.log("register_dataset_types"),
    benchmark:
        paths.benchmark("register_dataset_types")
    params:
        cmd=WF.commands.register(),
    priority: 100
    localrule: True
    shell:
        "{params.cmd} > {log} 2>&1"
