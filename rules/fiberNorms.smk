# fiberNorms: one normalisation per arm across all spectrographs (dims instrument, arm).


rule fiberNorms:
    conda:
        "../envs/pfscalib.yaml"
    input:
        step_inputs("fiberNorms"),
    output:
        "results/certified/{epoch}/fiberNorms/{arm}.json",
    log:
        "logs/{epoch}/fiberNorms/{arm}.log",
    benchmark:
        "benchmarks/{epoch}/fiberNorms/{arm}.tsv"
    params:
        cmd=step_command("fiberNorms"),
    threads: step_threads("fiberNorms")
    priority: step_priority("fiberNorms")
    resources:
        mem_mb=step_mem_mb("fiberNorms"),
        runtime=step_runtime("fiberNorms"),
        **site_resources(),
    shell:
        "({params.cmd} -j {threads}) > {log} 2>&1"
