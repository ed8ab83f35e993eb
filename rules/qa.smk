# QA pictures, the gate's verdicts, drift panels and the certification table, for `snakemake --report`:
# organised camera x calibration (categories and subcategories from the picture names).


rule qa:
    input:
        epoch_sentinels,
    output:
        report(
            directory(paths.qa_dir("{epoch}")),
            patterns=["{calibration}_{camera}.png"],
            caption="../report/qa.rst",
            category="{camera}",
            subcategory="{calibration}",
            labels={"camera": "{camera}", "calibration": "{calibration}", "epoch": "{epoch}"},
        ),
    log:
        paths.log("{epoch}", "qa"),
    benchmark:
        paths.benchmark("{epoch}", "qa")
    localrule: True
    conda:
        "../envs/pfscalib.yaml"
    resources:
        disk_mb=0,  # registry rows or files outside the datastore: not Snakemake's 1000 MB default
    params:
        cmd=qa_command,
    shell:
        "{params.cmd} > {log} 2>&1"


rule drift:
    input:
        WF.all_sentinels(),
    output:
        report(
            directory(paths.DRIFT_DIR),
            patterns=["{camera}.png"],
            caption="../report/drift.rst",
            category="{camera}",
            subcategory="drift across epochs",
            labels={"camera": "{camera}", "calibration": "drift", "epoch": "all"},
        ),
    log:
        paths.log("drift"),
    benchmark:
        paths.benchmark("drift")
    localrule: True
    conda:
        "../envs/pfscalib.yaml"
    resources:
        disk_mb=0,  # files outside the datastore: not Snakemake's 1000 MB default
    params:
        cmd=drift_command,
    shell:
        "{params.cmd} > {log} 2>&1"


rule quality:
    input:
        WF.all_sentinels(),
    output:
        report(paths.QUALITY, caption="../report/quality.rst", category="Quality gate"),
    log:
        paths.log("quality"),
    benchmark:
        paths.benchmark("quality")
    localrule: True
    conda:
        "../envs/pfscalib.yaml"
    resources:
        disk_mb=0,  # files outside the datastore: not Snakemake's 1000 MB default
    params:
        cmd=quality_command,
    shell:
        "{params.cmd} > {log} 2>&1"


rule certifications:
    input:
        WF.all_sentinels(),
    output:
        report(paths.CERTIFICATIONS, caption="../report/certifications.rst", category="Certification"),
    log:
        paths.log("certifications"),
    benchmark:
        paths.benchmark("certifications")
    localrule: True
    conda:
        "../envs/pfscalib.yaml"
    resources:
        disk_mb=0,  # registry rows or files outside the datastore: not Snakemake's 1000 MB default
    params:
        cmd=WF.commands.status(CONFIG_SOURCE),
    shell:
        "{params.cmd} > {output} 2> {log}"


rule overview:
    input:
        certifications=paths.CERTIFICATIONS,
        quality=paths.QUALITY,
        pictures=[paths.qa_dir(epoch) for epoch in WF.epochs],
    output:
        report(paths.OVERVIEW, caption="../report/overview.rst", category="Overview"),
    log:
        paths.log("overview"),
    benchmark:
        paths.benchmark("overview")
    localrule: True
    conda:
        "../envs/pfscalib.yaml"
    resources:
        disk_mb=0,  # files outside the datastore: not Snakemake's 1000 MB default
    params:
        cmd=WF.commands.overview(paths.CERTIFICATIONS, paths.QUALITY, paths.OVERVIEW),
    shell:
        "{params.cmd} > {log} 2>&1"
