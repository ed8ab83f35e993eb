# The demo repository (demo: enabled): simulated PFS raws in a real Butler repo.
if WF.demo_enabled:

    rule demo_repo:
        conda:
            "../envs/pfscalib.yaml"
        output:
            paths.demo_marker(WF.datastore),
        log:
            paths.log("demo_repo"),
        benchmark:
            paths.benchmark("demo_repo")
        params:
            cmd=WF.commands.demo(),
        localrule: True
        shell:
            "{params.cmd} > {log} 2>&1"
