"""The settings reference in Markdown, generated from the declarations.

``scripts/gen_config_docs.py`` wraps :func:`reference_markdown` into
``docs/config.md``; a test keeps that file in step with the code.
"""

from __future__ import annotations

import re

from pounce.config import schema
from pounce.config.declare import SettingSpec
from pounce.config.rules import RULES
from pounce.config.values import range_rule, toml_literal

_KIND_NAMES: dict[type, str] = {
    bool: "boolean",
    int: "integer",
    float: "number",
    str: "string",
    tuple: "array of strings",
}
_NONE = "—"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _code(text: str) -> str:
    return f"`{text}`"


def _markdown(doc: str) -> str:
    """Docstrings use reST double backticks; Markdown wants single ones."""
    return doc.replace("``", "`")


def _table_doc(doc: str) -> str:
    """The class docstring without its leading ``[table]``: (the heading says it)."""
    text = _markdown(re.sub(r"^``\[+[\w.]+\]+``: ", "", doc))
    return text[:1].upper() + text[1:]


def type_text(spec: SettingSpec) -> str:
    """``integer, 1-65535``, ``number (seconds), > 0``, ``one of `auto`, `thread` ``..."""
    if spec.is_enum:
        return "one of " + ", ".join(_code(c) for c in spec.choices)
    text = _KIND_NAMES[spec.kind]
    if spec.setting.octal:
        text += " (octal)"
    if spec.setting.unit:
        text += f" ({spec.setting.unit})"
    rule = range_rule(spec) or spec.setting.rule
    return f"{text}, {rule}" if rule else text


def _default_text(spec: SettingSpec) -> str:
    return "not set" if spec.default is None else _code(toml_literal(spec, spec.default))


def _flags_text(spec: SettingSpec) -> str:
    flags = spec.flags
    if not flags:
        return _NONE
    if spec.kind is bool and spec.default is True:
        return " / ".join(_code(f) for f in (flags[0], "--no-" + flags[0].removeprefix("--")))
    text = _code(flags[0])
    if len(flags) > 1:
        text += " (or " + ", ".join(_code(f) for f in flags[1:]) + ")"
    return text


def _rows(specs: tuple[SettingSpec, ...], *, single: bool) -> list[str]:
    if single:
        head = "| Key | Type | Default | Environment variable | Flag | Description |"
    else:
        head = "| Key | Type | Default | Description |"
    lines = [head, "|" + "---|" * head.count(" | ") + "---|"]
    for spec in specs:
        cells = [_code(spec.key), type_text(spec), _default_text(spec)]
        if single:
            cells += [_code(spec.env_var or "") if spec.env_var else _NONE, _flags_text(spec)]
        cells.append(_markdown(spec.setting.doc))
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return lines


def _rules(table: str) -> list[str]:
    """The rules between settings that blame a key of ``table``, as a list."""
    docs = [r.doc for r in RULES if r.key.rpartition(".")[0] == table]
    return ["", "Between settings:", "", *(f"- {doc}" for doc in docs)] if docs else []


def reference_markdown() -> str:
    """The settings reference in Markdown.

    One section per table, one row per setting: key, type (with its allowed
    range), default, environment variable, flag and description; then the
    rules between settings, if the table has any.
    """
    lines = ["## Top level", "", *_rows(schema.top_settings(), single=True)]
    for table in schema.tables():
        header = f"[[{table.name}]]" if table.array else f"[{table.name}]"
        lines += ["", f"## `{header}`", "", _table_doc(table.doc), ""]
        lines += _rows(table.settings, single=not table.array)
        lines += _rules(table.name)
    return "\n".join(lines) + "\n"
