# bias: overscan-subtracted median of BIAS visits, per camera; certified into PFS/calib.


rule bias:
    conda:
        "../envs/pfscalib.yaml"
    input:
        unpack(step_inputs("bias")),
    output:
        "results/certified/{epoch}/bias/{arm}{spectrograph}.json",
    log:
        "logs/{epoch}/bias/{arm}{spectrograph}.log",
    benchmark:
        "benchmarks/{epoch}/bias/{arm}{spectrograph}.tsv"
    params:
        visits=step_visits("bias"),
        cmd=step_command("bias"),
    threads: step_threads("bias")
    resources:
        mem_mb=step_mem_mb("bias"),
        runtime=step_runtime("bias"),
        **site_resources(),
    shell:
        "({params.cmd}) > {log} 2>&1"
