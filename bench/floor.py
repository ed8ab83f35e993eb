"""A minimal Snakefile with the workflow's job graph (same jobs and edges: every step job needs its epoch's
check marker and the dataset-type registration, which needs all checks; fiberProfilesInputs needs only its
epoch's check) and no input functions, no config or tables: Snakemake's own dry-run floor for the scale
benchmark."""

from __future__ import annotations

STEPS = ["bias", "dark", "flat", "bootstrap", "detectorMap", "fiberProfiles"]
CHECKED = ["bias", "dark", "flat", "bootstrap", "detectorMap", "fiberProfiles", "fiberNorms"]


def snakefile(epochs: list[str], cameras: list[str]) -> str:
    arms = sorted({c[0] for c in cameras})
    out = [
        f"EPOCHS = {epochs!r}",
        f"CAMERAS = {cameras!r}",
        f"ARMS = {arms!r}",
        f"STEPS = {CHECKED!r}",
        "",
        "rule all:",
        "    input:",
        "        expand('results/certified/{e}/{s}/{c}.json', e=EPOCHS, s=STEPS[:-1], c=CAMERAS),",
        "        expand('results/certified/{e}/fiberNorms/{a}.json', e=EPOCHS, a=ARMS),",
        "        expand('results/qa/{e}', e=EPOCHS),",
        "        'results/qa/certifications.tsv'",
        "",
        "CHECKED = ['results/checks/{e}.json', 'results/registry/dataset_types.json']",
        "",
        "rule check:",
        "    output: 'results/checks/{e}.json'",
        "    shell: 'touch {output}'",
        "",
        "rule registry:",
        "    input: expand('results/checks/{e}.json', e=EPOCHS)",
        "    output: 'results/registry/dataset_types.json'",
        "    shell: 'touch {output}'",
        "",
        "rule profiles_inputs:",
        "    input: 'results/checks/{e}.json'",
        "    output: 'results/fiberProfilesInputs/{e}.json'",
        "    shell: 'touch {output}'",
        "",
    ]
    previous = None
    for step in STEPS:
        needs = [f"'results/certified/{{e}}/{previous}/{{c}}.json'"] if previous else []
        if step == "fiberProfiles":
            needs.append("'results/fiberProfilesInputs/{e}.json'")
        out += [
            f"rule {step}:",
            "    input: " + ", ".join(needs + ["CHECKED"]),
            f"    output: 'results/certified/{{e}}/{step}/{{c}}.json'",
            "    shell: 'touch {output}'",
            "",
        ]
        previous = step
    out += [
        "rule fiberNorms:",
        "    input: CHECKED, lambda w: expand('results/certified/{e}/fiberProfiles/{c}.json', e=w.e,"
        " c=[c for c in CAMERAS if c[0] == w.a])",
        "    output: 'results/certified/{e}/fiberNorms/{a}.json'",
        "    shell: 'touch {output}'",
        "",
        "rule qa:",
        "    input: lambda w: [f for f in rules.all.input if f.startswith(f'results/certified/{w.e}/')]",
        "    output: directory('results/qa/{e}')",
        "    shell: 'mkdir -p {output}'",
        "",
        "rule certifications:",
        "    input: [f for f in rules.all.input if f.startswith('results/certified/')]",
        "    output: 'results/qa/certifications.tsv'",
        "    shell: 'touch {output}'",
        "",
    ]
    return "\n".join(out)
