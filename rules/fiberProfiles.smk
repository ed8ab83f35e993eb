# fiberProfiles: fitFiberProfiles over the epoch's profiles_run (bright/dark groups), per camera.


rule fiberProfiles:
    conda:
        "../envs/pfscalib.yaml"
    input:
        step_inputs("fiberProfiles"),
    output:
        "results/certified/{epoch}/fiberProfiles/{arm}{spectrograph}.json",
    log:
        "logs/{epoch}/fiberProfiles/{arm}{spectrograph}.log",
    benchmark:
        "benchmarks/{epoch}/fiberProfiles/{arm}{spectrograph}.tsv"
    params:
        cmd=step_command("fiberProfiles"),
    threads: step_threads("fiberProfiles")
    priority: step_priority("fiberProfiles")
    resources:
        mem_mb=step_mem_mb("fiberProfiles"),
        runtime=step_runtime("fiberProfiles"),
        **site_resources(),
    shell:
        "({params.cmd} -j {threads}) > {log} 2>&1"
