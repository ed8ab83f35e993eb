# The demo repository (demo: enabled): simulated PFS raws in a real Butler repo.
if WF.demo_enabled:

    rule demo_repo:
        output:
            paths.demo_marker(WF.datastore),
        log:
            paths.log("demo_repo"),
        benchmark:
            paths.benchmark("demo_repo")
        localrule: True
        conda:
            "../envs/pfscalib.yaml"
        resources:
            disk_mb=0,  # the site's raws, before any budgeted job
        params:
            cmd=WF.commands.demo(),
        shell:
            "{params.cmd} > {log} 2>&1"
