# The calibration steps (bias ... fiberNorms), one rule each, defined once: every difference between
# them is a field of pfscalib.plan.steps.Step. A job runs pipetask (resuming an interrupted run), certifies
# its product per camera (or arm), cleans its intermediates and writes its sentinel.
for step in STEPS.values():

    rule:
        name:
            step.name
        input:
            step_inputs(step),
        output:
            paths.sentinel(step.name, "{epoch}", step.unit_pattern),
        log:
            paths.log("{epoch}", step.name, step.unit_pattern),
        benchmark:
            paths.benchmark("{epoch}", step.name, step.unit_pattern)
        priority: step_priority(step.name)
        conda:
            "../envs/pfscalib.yaml"
        threads: step_threads(step)
        resources:
            **site_resources(),
            mem_mb=step_mem_mb(step),
            runtime=step_runtime(step),
            disk_mb=step_disk_mb(step),
        params:
            cmd=step_command(step),
            guide=step_guide(step),
        shell:
            # the guide's certify and clean commands as comment lines, then the job
            "{params.guide}({params.cmd} -j {threads}) > {log} 2>&1"
