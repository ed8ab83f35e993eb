# The demo repository (demo: enabled): simulated PFS raws in a real Butler repo.
if WF.demo_enabled:

    rule demo_repo:
        conda:
            "../envs/pfscalib.yaml"
        output:
            WF.demo_marker(),
        log:
            "logs/demo_repo.log",
        benchmark:
            "benchmarks/demo_repo.tsv"
        params:
            cmd=WF.demo_command(),
        localrule: True
        shell:
            "{params.cmd} > {log} 2>&1"
