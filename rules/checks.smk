# Before any pipetask job: each step's visits exist, have the right observation type and raws
# (one job per epoch: one registry open for all seven tables).


rule check_visits:
    conda:
        "../envs/pfscalib.yaml"
    input:
        repo_marker(),
    output:
        check_marker("{epoch}"),
    log:
        "logs/{epoch}/check_visits.log",
    benchmark:
        "benchmarks/{epoch}/check_visits.tsv"
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
        REGISTRY,
    log:
        "logs/register_dataset_types.log",
    benchmark:
        "benchmarks/register_dataset_types.tsv"
    params:
        cmd=register_command(),
    priority: 100
    localrule: True
    shell:
        "{params.cmd} > {log} 2>&1"


# Needs only its epoch's check, not the registration: defineFiberProfilesInputs registers its own
# dataset type, so it can run beside the registration (one core is otherwise idle there).
rule fiberProfilesInputs:
    conda:
        "../envs/pfscalib.yaml"
    input:
        checked(),
    output:
        profiles_marker("{epoch}"),
    log:
        "logs/{epoch}/fiberProfilesInputs.log",
    benchmark:
        "benchmarks/{epoch}/fiberProfilesInputs.tsv"
    params:
        cmd=define_profiles_command,
    priority: step_priority("detectorMap")  # all of the epoch's fiberProfiles jobs wait for it
    localrule: True
    shell:
        "{params.cmd} > {log} 2>&1"
