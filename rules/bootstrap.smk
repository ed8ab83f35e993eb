# bootstrap: rough detectorMap from one quartz + one arc with the camera's spectralOffset;
# certified into PFS/bootstrap, separate from the final detectorMaps.


rule bootstrap:
    conda:
        "../envs/pfscalib.yaml"
    input:
        step_inputs("bootstrap"),
    output:
        "results/certified/{epoch}/bootstrap/{arm}{spectrograph}.json",
    log:
        "logs/{epoch}/bootstrap/{arm}{spectrograph}.log",
    benchmark:
        "benchmarks/{epoch}/bootstrap/{arm}{spectrograph}.tsv"
    params:
        cmd=step_command("bootstrap"),
    threads: step_threads("bootstrap")
    priority: step_priority("bootstrap")
    resources:
        mem_mb=step_mem_mb("bootstrap"),
        runtime=step_runtime("bootstrap"),
        **site_resources(),
    shell:
        "({params.cmd} -j {threads}) > {log} 2>&1"
