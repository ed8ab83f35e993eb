# QA pictures and the certification table, for `snakemake --report report.html`.


@declared
def qa_command(wildcards, input, output):
    return WF.commands.qa(list(input), output[0])


rule qa:
    conda:
        "../envs/pfscalib.yaml"
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
    params:
        cmd=qa_command,
    localrule: True
    shell:
        "{params.cmd} > {log} 2>&1"


rule certifications:
    conda:
        "../envs/pfscalib.yaml"
    input:
        WF.all_sentinels(),
    output:
        report(paths.CERTIFICATIONS, caption="../report/certifications.rst", category="Certification"),
    log:
        paths.log("certifications"),
    benchmark:
        paths.benchmark("certifications")
    params:
        cmd=WF.commands.status(CONFIG_SOURCE),
    localrule: True
    shell:
        "{params.cmd} > {output} 2> {log}"
