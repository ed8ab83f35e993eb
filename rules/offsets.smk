# spectralOffset `auto` (pfscalib.job.offsets): per epoch and camera, the ISR of the bootstrap pair once, the
# bootstrap task over a grid of offsets (one job per grid point, or one per camera), then the proposal the
# bootstrap job uses. A refused camera fails its propose job (one line): its bootstrap does not run.
if WF.auto_cameras:

    wildcard_constraints:
        offset=r"-?[0-9]+",

    rule offset_isr:
        input:
            step_inputs(STEPS[OFFSET_STEP], proposal=False),
        output:
            paths.offset_isr("{epoch}", "{arm}{spectrograph}"),
        log:
            paths.log("{epoch}", "offset_isr", "{arm}{spectrograph}"),
        benchmark:
            paths.benchmark("{epoch}", "offset_isr", "{arm}{spectrograph}")
        priority: step_priority(OFFSET_STEP)
        conda:
            "../envs/pfscalib.yaml"
        threads: step_threads(STEPS[OFFSET_STEP])
        resources:
            **site_resources(),
            mem_mb=step_mem_mb(STEPS[OFFSET_STEP]),
            runtime=step_runtime(STEPS[OFFSET_STEP]),
            # the bootstrap pair's postISRCCDs: bounded by the bootstrap job's own estimate
            disk_mb=step_disk_mb(STEPS[OFFSET_STEP]),
        params:
            cmd=rerun_trigger(lambda w: WF.commands.offset_isr(w.epoch, unit_of(w))),
        shell:
            "({params.cmd} -j {threads}) > {log} 2>&1"

    rule offset_scan:
        input:
            paths.offset_isr("{epoch}", "{arm}{spectrograph}"),
        output:
            paths.offset_scan("{epoch}", "{arm}{spectrograph}", "{offset}"),
        log:
            paths.log("{epoch}", "offset_scan", "{arm}{spectrograph}", "{offset}"),
        benchmark:
            paths.benchmark("{epoch}", "offset_scan", "{arm}{spectrograph}", "{offset}")
        priority: step_priority(OFFSET_STEP)
        conda:
            "../envs/pfscalib.yaml"
        resources:
            **site_resources(),
            mem_mb=step_mem_mb(STEPS[OFFSET_STEP]),
            runtime=step_runtime(STEPS[OFFSET_STEP]),
            disk_mb=0,  # a candidate detectorMap and a log per offset: megabytes beside the ISR's images
        params:
            cmd=rerun_trigger(lambda w: WF.commands.offset_scan(w.epoch, unit_of(w), int(w.offset))),
        shell:
            "({params.cmd} -j 1) > {log} 2>&1"

    # offset_search.jobs: per_camera (the whole grid in one process) is chosen by the scan results the
    # propose job asks for: offset "all".
    ruleorder: offset_scan_camera > offset_scan

    rule offset_scan_camera:
        input:
            paths.offset_isr("{epoch}", "{arm}{spectrograph}"),
        output:
            paths.offset_scan("{epoch}", "{arm}{spectrograph}", "all"),
        log:
            paths.log("{epoch}", "offset_scan", "{arm}{spectrograph}", "all"),
        benchmark:
            paths.benchmark("{epoch}", "offset_scan", "{arm}{spectrograph}", "all")
        priority: step_priority(OFFSET_STEP)
        conda:
            "../envs/pfscalib.yaml"
        resources:
            **site_resources(),
            mem_mb=step_mem_mb(STEPS[OFFSET_STEP]),
            runtime=step_runtime(STEPS[OFFSET_STEP]),
            disk_mb=0,  # a candidate detectorMap and a log per offset: megabytes beside the ISR's images
        params:
            cmd=rerun_trigger(lambda w: WF.commands.offset_scan_camera(w.epoch, unit_of(w))),
        shell:
            "{params.cmd} > {log} 2>&1"

    rule propose_offset:
        input:
            scan_results,
        output:
            paths.offset_proposal("{epoch}", "{arm}{spectrograph}"),
            report(
                paths.offset_plot("{epoch}", "{arm}{spectrograph}"),
                caption="../report/offsets.rst",
                category="spectralOffset proposals",
                subcategory="{epoch}",
                labels={"epoch": "{epoch}", "camera": "{arm}{spectrograph}"},
            ),
        log:
            paths.log("{epoch}", "propose_offset", "{arm}{spectrograph}"),
        benchmark:
            paths.benchmark("{epoch}", "propose_offset", "{arm}{spectrograph}")
        priority: step_priority(OFFSET_STEP)
        localrule: True
        conda:
            "../envs/pfscalib.yaml"
        resources:
            disk_mb=0,  # files outside the datastore: not Snakemake's 1000 MB default
        params:
            cmd=rerun_trigger(lambda w: WF.commands.propose(w.epoch, unit_of(w))),
        shell:
            "{params.cmd} > {log} 2>&1"
