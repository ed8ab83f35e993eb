# fiberProfiles: fitFiberProfiles over the epoch's profiles_run (bright/dark groups), per camera.


rule fiberProfiles:
    conda:
        "../envs/pfscalib.yaml"
    input:
        unpack(step_inputs("fiberProfiles")),
    output:
        "results/certified/{epoch}/fiberProfiles/{arm}{spectrograph}.json",
    log:
        "logs/{epoch}/fiberProfiles/{arm}{spectrograph}.log",
    benchmark:
        "benchmarks/{epoch}/fiberProfiles/{arm}{spectrograph}.tsv"
    params:
        visits=step_visits("fiberProfiles"),
        cmd=step_command("fiberProfiles"),
    threads: step_threads("fiberProfiles")
    resources:
        mem_mb=step_mem_mb("fiberProfiles"),
        runtime=step_runtime("fiberProfiles"),
        **site_resources(),
    shell:
        "({params.cmd}) > {log} 2>&1"
