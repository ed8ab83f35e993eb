# Before any pipetask job: each step's visits exist, have the right observation type and raws.


rule check_visits:
    conda:
        "../envs/pfscalib.yaml"
    input:
        repo_marker(),
    output:
        "results/checks/{epoch}/{step}.json",
    log:
        "logs/{epoch}/checks/{step}.log",
    params:
        cmd=check_command,
    priority: 100
    localrule: True
    shell:
        "{params.cmd} 2> {log}"


rule register_dataset_types:
    conda:
        "../envs/pfscalib.yaml"
    input:
        all_checks(),
    output:
        "results/registry/dataset_types.json",
    log:
        "logs/register_dataset_types.log",
    params:
        cmd=register_command,
    priority: 100
    localrule: True
    shell:
        "{params.cmd} > {log} 2>&1"


rule fiberProfilesInputs:
    conda:
        "../envs/pfscalib.yaml"
    input:
        epoch_checks,
    output:
        "results/fiberProfilesInputs/{epoch}.json",
    log:
        "logs/{epoch}/fiberProfilesInputs.log",
    params:
        cmd=define_profiles_command,
    localrule: True
    shell:
        "{params.cmd} > {log} 2>&1"
