"""The quality gate between pipetask and certification: a product's metrics against the limits (yellow and
red per metric, per arm where it differs) and against the incumbent it would replace.

green/yellow: certify (yellow recorded); red: hold (nothing certified), unless the config accepts it
(`accept: [{epoch, step, camera, reason, by}]`).
"""

from __future__ import annotations

import math
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

LEVELS = ("green", "yellow", "red")


class LimitsError(ValueError):
    """A limits file that does not validate; str() is one line naming the file, the key and the problem."""


def shipped_limits() -> str:
    return str(resources.files("pfscalib").joinpath("limits.yaml"))


def load_limits(site_file: str | None = None) -> dict:
    """The shipped limits, each metric of a site's file replacing the shipped one whole; validated (with
    defaults)."""
    from .config import schema_error_line, schema_path

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


def read_noise(limits: dict, arm: str) -> float:
    nominal = limits.get("nominal", {}).get("read_noise", {"default": 4.0})
    return float(nominal.get(arm, nominal["default"]))


def _bounds(spec: dict, arm: str) -> dict:
    return {**{k: spec[k] for k in ("max", "min") if k in spec}, **spec.get("arms", {}).get(arm, {})}


def judge(metrics: dict[str, float], limits: dict, prefix: str, arm: str) -> list[dict]:
    """Every limit of the product's metrics (names starting with prefix): level and the rule, in words."""
    rules = []
    for name, spec in limits["metrics"].items():
        if not name.startswith(f"{prefix}.") or not ({"max", "min"} & set(_bounds(spec, arm))):
            continue
        value = metrics.get(name)
        if value is None or not math.isfinite(value):
            rules.append({"metric": name, "value": value, "level": "yellow", "rule": f"{name} not measured"})
            continue
        level, rule = "green", f"{name} {value:.4g} within limits"
        for side, band in _bounds(spec, arm).items():
            for lvl in ("red", "yellow"):
                bad = value > band[lvl] if side == "max" else value < band[lvl]
                if bad and LEVELS.index(lvl) > LEVELS.index(level):
                    sign = ">" if side == "max" else "<"
                    level, rule = lvl, f"{name} {value:.4g} {sign} {lvl} {band[lvl]:g}"
        rules.append({"metric": name, "value": value, "level": level, "rule": rule, "source": spec["source"]})
    return rules


def compare(candidate: dict[str, float], incumbent: dict[str, float], limits: dict, prefix: str) -> list[dict]:
    """Candidate against the incumbent it would replace, on the metrics that say which way is worse: red if
    worse by more than the margin (a fraction of the incumbent's value)."""
    margin = float(limits["margin"])
    rules = []
    for name, spec in limits["metrics"].items():
        worse = spec.get("worse")
        if not name.startswith(f"{prefix}.") or not worse or name not in candidate or name not in incumbent:
            continue
        new, old = candidate[name], incumbent[name]
        if not (math.isfinite(new) and math.isfinite(old)):
            continue
        delta = (new - old) if worse == "higher" else (old - new)
        bad = delta > margin * abs(old)
        rules.append(
            {
                "metric": name,
                "value": new,
                "incumbent": old,
                "level": "red" if bad else "green",
                "rule": f"{name} {new:.4g} vs incumbent {old:.4g}: "
                + (f"worse by more than {100 * margin:g}%" if bad else "not worse"),
            }
        )
    return rules


def verdict(rules: list[dict]) -> str:
    return max((r["level"] for r in rules), key=LEVELS.index, default="green")


def failing(rules: list[dict]) -> list[str]:
    return [r["rule"] for r in rules if r["level"] == "red"]


def accepted(accepts: list[dict], epoch: str, step: str, unit: str) -> dict | None:
    """The config's explicit acceptance of this held product, if any."""
    return next((a for a in accepts if (a["epoch"], a["step"], a["camera"]) == (epoch, step, unit)), None)


def held_records(root: str) -> list[dict[str, Any]]:
    """The records of held products (paths.held), oldest first."""
    import json

    records = []
    for path in sorted(Path(root).rglob("*.json")):
        try:
            records.append(json.loads(path.read_text()))
        except json.JSONDecodeError:
            continue
    return records


def held_summary(root: str) -> str:
    """One line: what was held and why ("" if nothing is)."""
    held = held_records(root)
    items = [f"{h['epoch']}/{h['step']}/{h['unit']} ({'; '.join(h['failing'])})" for h in held]
    return f"held {len(held)}: " + ", ".join(items) if held else ""
