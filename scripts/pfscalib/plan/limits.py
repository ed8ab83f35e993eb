"""The quality gate's limits as the configuration holds them: the shipped limits file, a site's replacing
metrics whole, validated with defaults; and the config's explicit acceptances (pfscalib.job.gate judges)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import yaml

from pfscalib.plan.schema import schema_error_line, schema_path


class LimitsError(ValueError):
    """A limits file that does not validate; str() is one line naming the file, the key and the problem."""


def shipped_limits() -> str:
    return str(resources.files("pfscalib.plan").joinpath("limits.yaml"))


def load_limits(site_file: str | None = None) -> dict:
    """The shipped limits, each metric of a site's file replacing the shipped one whole; validated (with
    defaults)."""

    def read(path: str) -> dict:
        try:
            data = yaml.safe_load(Path(path).read_text())
        except FileNotFoundError:
            raise LimitsError(f"{path}: no such limits file") from None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f"line {mark.line + 1}" if mark else "YAML"
            raise LimitsError(f"{path}: {where}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
        import jsonschema

        schema = yaml.safe_load(Path(schema_path("limits")).read_text())
        if not jsonschema.Draft202012Validator(schema).is_valid(data):
            raise LimitsError(f"{path}: {schema_error_line(data, schema_path('limits'))}")
        return data

    limits = read(shipped_limits())
    limits["file"] = shipped_limits()
    if site_file:
        site = read(site_file)
        limits = {
            **limits,
            **{k: v for k, v in site.items() if k != "metrics"},
            "metrics": {**limits["metrics"], **site["metrics"]},
            "file": site_file,
            "shipped_version": limits["version"],
        }
    limits.setdefault("margin", 0.2)
    return limits


def limits_note(site_file: str | None) -> str:
    """One line for the run's start when the config sets no `limits:`: which limits the gate judges by."""
    if site_file:
        return ""
    limits = load_limits()
    return (
        f"quality limits: the shipped {limits['file']} (version {limits['version']}; no `limits:` in the "
        "config): real PFS rules only, several metrics without a fixed bound (docs/quality-gate.md)"
    )


def accepted(accepts: list[dict], epoch: str, step: str, unit: str) -> dict | None:
    """The config's acceptance naming this job (epoch, step, camera), if any; it certifies only the product
    whose dataset id it names (pfscalib.job.run assess): a rebuild is judged again."""
    return next((a for a in accepts if (a["epoch"], a["step"], a["camera"]) == (epoch, step, unit)), None)


# What a user sees of the gate's verdict (sentinel, status, summary, QA table, held records): one vocabulary.
# The per-rule levels (green / yellow / red) stay internal.
VERDICTS = ("pass", "accepted", "warn", "held")  # best to worst; accepted counts as a pass, with a mark
LEVEL_WORDS = {"green": "pass", "yellow": "warn", "red": "held"}


def verdict_word(quality: dict | None) -> str:
    """pass / warn / held / accepted of a product's quality record (a sentinel's `quality`, a held record);
    "not judged" for a product certified without one."""
    if not quality:
        return "not judged"
    if quality.get("accepted"):
        return "accepted"
    word = quality.get("verdict", "")
    if word in VERDICTS:
        return word
    return LEVEL_WORDS.get(quality.get("level", word), "not judged")  # older sentinels: the level itself


def accept_entry(epoch: str, step: str, unit: str, dataset_id: str) -> str:
    """The exact `accept:` entry (YAML, one line) that certifies this held product and no rebuild of it."""
    return (
        f'- {{epoch: {epoch}, step: {step}, camera: {unit}, datasetId: "{dataset_id}", '
        f'reason: "<why it is good enough>", by: <you>}}'
    )
