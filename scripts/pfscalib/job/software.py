"""What decides whether a RUN can be resumed besides the command: the software and the pipeline files.

pipetask refuses to extend a RUN whose recorded `packages` differ from the running stack ("Package versions
mismatch") or whose `<label>_config` differs from the pipeline's ("Config does not match"): a job's identity
therefore holds the versions of the stack and a digest of every pipeline file it reads, with environment
variables expanded (`$DRP_STELLA_DIR/pipelines/...` names another file after a stack change). Standard
library and PyYAML only: also used inside Snakemake's process.
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Iterable
from pathlib import Path

import yaml


def versions() -> dict[str, str]:
    """The installed distributions (pip/conda) and, at an EUPS site, the products set up (SETUP_<PRODUCT>
    holds the product's version), and the interpreter: what lsst.utils.packages records per RUN, and more."""
    from importlib import metadata

    found = {(d.metadata["Name"] or "").lower(): d.version for d in metadata.distributions()}
    found.pop("", None)
    found.update({k: v for k, v in os.environ.items() if k.startswith("SETUP_")})
    found["python"] = f"{sys.prefix} {sys.version.split()[0]}"
    return dict(sorted(found.items()))


def pipeline_files(named: Iterable[str]) -> dict[str, str]:
    """{expanded path: sha256} of the files a pipetask command names (its pipeline without the #subset, the
    FILE of each -C LABEL:FILE: PipetaskCommand.pipeline_files) and every file a pipeline YAML imports or
    names as a task config file (keys `location`, `file`)."""
    files = list(named)
    digests: dict[str, str] = {}
    while files:
        path = os.path.expanduser(os.path.expandvars(files.pop()))
        if path in digests:
            continue
        try:
            text = Path(path).read_bytes()
        except OSError:
            digests[path] = "unreadable"
            continue
        digests[path] = hashlib.sha256(text).hexdigest()
        if path.endswith((".yaml", ".yml")):
            files.extend(_named_files(text))
    return dict(sorted(digests.items()))


def _named_files(text: bytes) -> list[str]:
    try:
        tree = yaml.safe_load(text)
    except yaml.YAMLError:
        return []
    out: list[str] = []
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("location", "file") and isinstance(value, str):
                    out.append(value)
                else:
                    stack.append(value)
        elif isinstance(node, list):
            stack.extend(node)
    return out


def changes(old: dict[str, str], new: dict[str, str], limit: int = 3) -> str:
    """'a 1.0 -> 1.1, b (new), ...' for the entries that differ."""
    keys = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
    parts = [f"{k} {old.get(k, '(none)')} -> {new.get(k, '(none)')}" for k in keys[:limit]]
    return ", ".join(parts) + (f" and {len(keys) - limit} more" if len(keys) > limit else "")
