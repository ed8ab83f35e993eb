"""The JSON schemas of the configuration, the visit tables and the limits (plan/schemas/), and their
violations as one line in words."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import yaml


def schema_path(name: str) -> str:
    return str(resources.files("pfscalib.plan").joinpath(f"schemas/{name}.schema.yaml"))


def schema_error_line(instance: Any, schema_file: str) -> str:
    """The most relevant JSON-schema violation as 'key.path: message'."""
    import jsonschema

    schema = yaml.safe_load(Path(schema_file).read_text())
    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(schema).iter_errors(instance))
    path = ".".join(str(p) for p in error.absolute_path) or "(top level)"
    if "errorMessage" in error.schema:  # the schema says what is meant (as ajv-errors does), not a regex
        return f"{path}: {error.instance!r} {error.schema['errorMessage']}"
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        known = list(error.schema.get("properties", {}))
        unknown = [k for k in error.instance if k not in known]
        return f"{path}: unknown key(s) {', '.join(map(repr, unknown))} (known: {', '.join(known)})"
    if error.validator == "uniqueItems" and isinstance(error.instance, list):  # not the whole list back
        twice = sorted({repr(x) for x in error.instance if error.instance.count(x) > 1})
        return f"{path}: {', '.join(twice)} listed more than once (its items must be unique)"
    return f"{path}: {error.message}"


def schema_valid(instance: Any, schema_file: str) -> bool:
    import jsonschema

    return jsonschema.Draft202012Validator(yaml.safe_load(Path(schema_file).read_text())).is_valid(instance)
