# QA pictures and the certification table, for `snakemake --report report.html`.


rule qa:
    conda:
        "../envs/pfscalib.yaml"
    input:
        epoch_sentinels,
    output:
        report(
            directory("results/qa/{epoch}"),
            patterns=["{name}.png"],
            caption="../report/qa.rst",
            category="QA pictures",
            subcategory="{epoch}",
        ),
    log:
        "logs/{epoch}/qa.log",
    benchmark:
        "benchmarks/{epoch}/qa.tsv"
    params:
        cmd=qa_command,
    localrule: True
    shell:
        "{params.cmd} > {log} 2>&1"


rule certifications:
    conda:
        "../envs/pfscalib.yaml"
    input:
        all_sentinels(),
    output:
        report("results/qa/certifications.tsv", caption="../report/certifications.rst", category="Certification"),
    log:
        "logs/certifications.log",
    benchmark:
        "benchmarks/certifications.tsv"
    params:
        cmd=status_command,
    localrule: True
    shell:
        "{params.cmd} > {output} 2> {log}"
