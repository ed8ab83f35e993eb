# bias: overscan-subtracted median of BIAS visits, per camera; certified into PFS/calib.


rule bias:
    conda:
        "../envs/pfscalib.yaml"
    input:
        step_inputs("bias"),
    output:
        "results/certified/{epoch}/bias/{arm}{spectrograph}.json",
    log:
        "logs/{epoch}/bias/{arm}{spectrograph}.log",
    benchmark:
        "benchmarks/{epoch}/bias/{arm}{spectrograph}.tsv"
    params:
        cmd=step_command("bias"),
    threads: step_threads("bias")
    priority: step_priority("bias")
    resources:
        mem_mb=step_mem_mb("bias"),
        runtime=step_runtime("bias"),
        **site_resources(),
    shell:
        "({params.cmd} -j {threads}) > {log} 2>&1"
