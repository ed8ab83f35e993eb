# detectorMap: fitted from arcs (+quartz) starting from the bootstrap; the candidate is copied
# as detectorMap_calib and certified (certifyDetectorMaps.py behaviour).


rule detectorMap:
    conda:
        "../envs/pfscalib.yaml"
    input:
        step_inputs("detectorMap"),
    output:
        "results/certified/{epoch}/detectorMap/{arm}{spectrograph}.json",
    log:
        "logs/{epoch}/detectorMap/{arm}{spectrograph}.log",
    benchmark:
        "benchmarks/{epoch}/detectorMap/{arm}{spectrograph}.tsv"
    params:
        cmd=step_command("detectorMap"),
    threads: step_threads("detectorMap")
    priority: step_priority("detectorMap")
    resources:
        mem_mb=step_mem_mb("detectorMap"),
        runtime=step_runtime("detectorMap"),
        **site_resources(),
    shell:
        "({params.cmd} -j {threads}) > {log} 2>&1"
