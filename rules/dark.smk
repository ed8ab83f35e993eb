# dark: per-second dark from DARK visits (needs the camera's bias), per camera.


rule dark:
    conda:
        "../envs/pfscalib.yaml"
    input:
        step_inputs("dark"),
    output:
        "results/certified/{epoch}/dark/{arm}{spectrograph}.json",
    log:
        "logs/{epoch}/dark/{arm}{spectrograph}.log",
    benchmark:
        "benchmarks/{epoch}/dark/{arm}{spectrograph}.tsv"
    params:
        cmd=step_command("dark"),
    threads: step_threads("dark")
    priority: step_priority("dark")
    resources:
        mem_mb=step_mem_mb("dark"),
        runtime=step_runtime("dark"),
        **site_resources(),
    shell:
        "({params.cmd} -j {threads}) > {log} 2>&1"
