# QA pictures and the certification table, for `snakemake --report report.html`.


rule qa:
    input:
        epoch_sentinels,
    output:
        report(
            directory(paths.qa_dir("{epoch}")),
            patterns=["{name}.png"],
            caption="../report/qa.rst",
            category="QA pictures",
            subcategory="{epoch}",
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
