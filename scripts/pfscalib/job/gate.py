"""The quality gate between pipetask and certification: a product's metrics against the limits (yellow and
red per metric, per arm where it differs) and against the incumbent it would replace.

green/yellow: certify (yellow recorded); red: hold (nothing certified), unless the config accepts this very
product (`accept: [{epoch, step, camera, datasetId, reason, by}]`). A metric that cannot be measured (NaN or
absent) is red unless its limit says `optional: true`. What a user sees says pass / warn / held / accepted
(pfscalib.plan.limits.verdict_word); green / yellow / red stay the per-rule levels.
"""

from __future__ import annotations

import math

LEVELS = ("green", "yellow", "red")


def read_noise(limits: dict, arm: str) -> float:
    nominal = limits.get("nominal", {}).get("read_noise", {"default": 4.0})
    return float(nominal.get(arm, nominal["default"]))


def _bounds(spec: dict, arm: str) -> dict:
    return {**{k: spec[k] for k in ("max", "min") if k in spec}, **spec.get("arms", {}).get(arm, {})}


def _limit_words(bounds: dict) -> str:
    return "; ".join(f"{side} {band['yellow']:g}/{band['red']:g}" for side, band in bounds.items())


def judge(metrics: dict[str, float], limits: dict, prefix: str, arm: str) -> list[dict]:
    """Every limit of the product's metrics (names starting with prefix): level and the rule, in words."""
    rules = []
    for name, spec in limits["metrics"].items():
        if not name.startswith(f"{prefix}.") or not ({"max", "min"} & set(_bounds(spec, arm))):
            continue
        value = metrics.get(name)
        if value is None or not math.isfinite(value):  # nothing passes silently
            optional = bool(spec.get("optional"))
            rules.append(
                {
                    "metric": name,
                    "value": None,
                    "level": "green" if optional else "red",  # optional: recorded, not judged
                    "rule": f"{name} not measured" + (" (optional)" if optional else ""),
                    "limit": "optional" if optional else "must be measured",
                    "source": spec["source"],
                }
            )
            continue
        level, rule, limit = "green", f"{name} {value:.4g} within limits", _limit_words(_bounds(spec, arm))
        for side, band in _bounds(spec, arm).items():
            for lvl in ("red", "yellow"):
                bad = value > band[lvl] if side == "max" else value < band[lvl]
                if bad and LEVELS.index(lvl) > LEVELS.index(level):
                    sign = ">" if side == "max" else "<"
                    level, rule = lvl, f"{name} {value:.4g} {sign} {lvl} {band[lvl]:g}"
                    limit = f"{'max' if side == 'max' else 'min'} {lvl} {band[lvl]:g}"
        rules.append(
            {"metric": name, "value": value, "level": level, "rule": rule, "limit": limit, "source": spec["source"]}
        )
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
                "limit": f"incumbent {old:.4g} {'+' if worse == 'higher' else '-'} {100 * margin:g}%",
                "rule": f"{name} {new:.4g} vs incumbent {old:.4g}: "
                + (f"worse by more than {100 * margin:g}%" if bad else "not worse"),
            }
        )
    return rules


def verdict(rules: list[dict]) -> str:
    return max((r["level"] for r in rules), key=LEVELS.index, default="green")


def failing(rules: list[dict]) -> list[str]:
    return [r["rule"] for r in rules if r["level"] == "red"]
