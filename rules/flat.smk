# flat: fiberFlat pixel response from dithered quartz (needs bias+dark), per camera.


rule flat:
    conda:
        "../envs/pfscalib.yaml"
    input:
        step_inputs("flat"),
    output:
        "results/certified/{epoch}/flat/{arm}{spectrograph}.json",
    log:
        "logs/{epoch}/flat/{arm}{spectrograph}.log",
    benchmark:
        "benchmarks/{epoch}/flat/{arm}{spectrograph}.tsv"
    params:
        cmd=step_command("flat"),
    threads: step_threads("flat")
    priority: step_priority("flat")
    resources:
        mem_mb=step_mem_mb("flat"),
        runtime=step_runtime("flat"),
        **site_resources(),
    shell:
        "({params.cmd} -j {threads}) > {log} 2>&1"
