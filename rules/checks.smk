# Before any pipetask job: each step's visits exist, have the right observation type and raws
# (one job per epoch: one registry open for all seven tables); then every dataset type is registered.
# A failed check's one line (the last of its log) is also printed to the console: these are local jobs,
# so their stderr is Snakemake's, and the user sees the cause without opening the log.


rule check_visits:
    input:
        repo_marker(),
    output:
        paths.check("{epoch}"),
    log:
        paths.log("{epoch}", "check_visits"),
    benchmark:
        paths.benchmark("{epoch}", "check_visits")
    priority: 100
    localrule: True
    conda:
        "../envs/pfscalib.yaml"
    resources:
        disk_mb=0,  # registry rows or files outside the datastore: not Snakemake's 1000 MB default
    params:
        cmd=check_command,
    shell:
        "{params.cmd} 2> {log} || {{ tail -n 1 {log} >&2; exit 1; }}"


# Registering dataset types writes to the registry: only after every table passed its checks.
rule register_dataset_types:
    input:
        [checked(epoch) for epoch in WF.epochs],
    output:
        paths.REGISTRY,
    log:
        paths.log("register_dataset_types"),
    benchmark:
        paths.benchmark("register_dataset_types")
    priority: 100
    localrule: True
    conda:
        "../envs/pfscalib.yaml"
    resources:
        disk_mb=0,  # registry rows or files outside the datastore: not Snakemake's 1000 MB default
    params:
        cmd=WF.commands.register(),
    shell:
        "{params.cmd} > {log} 2>&1 || {{ tail -n 1 {log} >&2; exit 1; }}"
