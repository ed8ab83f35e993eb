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


def accepted(accepts: list[dict], epoch: str, step: str, unit: str) -> dict | None:
    """The config's explicit acceptance of this held product, if any."""
    return next((a for a in accepts if (a["epoch"], a["step"], a["camera"]) == (epoch, step, unit)), None)
