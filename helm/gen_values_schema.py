#!/usr/bin/env python3
"""Write the `config` part of helm/pounce/values.schema.json from Pounce's declarations.

Usage: ``python helm/gen_values_schema.py`` to (re)write it, or ``--check`` to exit 1
when it is out of date (after a setting was added to ``pounce.config``).

The chart renders `config` into pounce.toml, so its schema lists every table and key of
docs/config.md with its type and range, and rejects anything else, except the tables
the chart derives itself: ``[[listen]]``, ``[admin]`` and ``[control]``.  The rest of
the schema is written by hand in the JSON file.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

from pounce.config.declare import SettingSpec
from pounce.config.schema import tables, top_settings

SCHEMA_PATH = Path(__file__).resolve().parent / "pounce" / "values.schema.json"

#: Tables the chart renders from its own values (probes, Service and preStop need them).
CHART_MANAGED = ("listen", "admin", "control")

_JSON_TYPES: dict[type, str] = {bool: "boolean", int: "integer", float: "number", str: "string"}


def setting_schema(spec: SettingSpec) -> dict[str, Any]:
    """The JSON schema of one setting: its type, choices and range, and its doc."""
    out: dict[str, Any] = {"description": spec.setting.doc.replace("``", "`")}
    if spec.is_enum:
        out["type"] = "string"
        out["enum"] = list(spec.choices)
        return out
    if spec.is_list:
        out["type"] = "array"
        out["items"] = {"type": "string"}
        return out
    out["type"] = _JSON_TYPES[spec.kind]
    if spec.kind in (int, float):
        if spec.setting.minimum is not None:
            key = "exclusiveMinimum" if spec.setting.exclusive_minimum else "minimum"
            out[key] = spec.setting.minimum
        if spec.setting.maximum is not None:
            out["maximum"] = spec.setting.maximum
    if spec.kind is str and getattr(spec.setting.check, "__name__", "") == "_check_not_empty":
        out["minLength"] = 1
    return out


def _summary(doc: str) -> str:
    """The first line of a table's docstring, without its leading ``[table]``:."""
    first = (doc.splitlines() or [""])[0]
    text = re.sub(r"^``\[+[\w.]+\]+``: ", "", first).replace("``", "`")
    return text[:1].upper() + text[1:]


def config_schema() -> dict[str, Any]:
    """The schema of the chart's `config` value."""
    properties: dict[str, Any] = {s.key: setting_schema(s) for s in top_settings()}
    objects: dict[str, dict[str, Any]] = {}
    for table in tables():
        if table.name in CHART_MANAGED or table.array:
            continue
        objects[table.name] = {
            "type": "object",
            "description": _summary(table.doc),
            "additionalProperties": False,
            "properties": {s.key: setting_schema(s) for s in table.settings},
        }
        parent, _, key = table.name.rpartition(".")
        into = objects[parent]["properties"] if parent else properties
        into[key] = objects[table.name]
    return {
        "type": "object",
        "description": (
            "pounce.toml (docs/config.md), except [[listen]], [admin] and [control], "
            "which the chart derives from `listen`, `admin` and its control socket."
        ),
        "additionalProperties": False,
        "required": ["app"],
        "properties": properties,
    }


def updated_schema() -> str:
    schema = json.loads(SCHEMA_PATH.read_text())
    schema["properties"]["config"] = config_schema()
    return json.dumps(schema, indent=2) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the file is stale")
    ns = parser.parse_args(argv)
    text = updated_schema()
    if ns.check:
        if SCHEMA_PATH.read_text() != text:
            print(f"{SCHEMA_PATH} is out of date: run python helm/gen_values_schema.py")
            return 1
        return 0
    SCHEMA_PATH.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
