"""Writing a :class:`Config` back as TOML: the effective configuration.

Every setting is written, defaults included, so the output shows what the
server really uses; loading it gives an equal :class:`Config`.  Values are
formatted by ``tomli_w``; tables are assembled here so that ``[[listen]]``
entries read like hand-written ones and file modes get an octal comment.
"""

from __future__ import annotations

import enum
import re
from typing import Any

import tomli_w

from pounce.config import schema
from pounce.config.declare import SettingSpec
from pounce.config.model import Config


def _plain(value: object) -> object:
    if isinstance(value, tuple):
        return list(value)
    return str(value.value) if isinstance(value, enum.Enum) else value


def _mapping(obj: object, specs: tuple[SettingSpec, ...]) -> dict[str, Any]:
    """The settings of ``obj`` that are set, as TOML-ready values."""
    values = ((s.key, getattr(obj, s.key)) for s in specs)
    return {key: _plain(value) for key, value in values if value is not None}


def _with_octal_comments(text: str, specs: tuple[SettingSpec, ...]) -> str:
    """TOML has octal literals but ``tomli_w`` writes decimal: say the octal in a comment."""
    for spec in specs:
        if spec.setting.octal:
            pattern = re.compile(rf"^({re.escape(spec.key)} = )(\d+)$", re.MULTILINE)
            text = pattern.sub(lambda m: f"{m[1]}{m[2]}  # {oct(int(m[2]))}", text)
    return text


def config_to_toml(config: Config) -> str:
    """The effective configuration as TOML: all defaults filled in, unset values left out.

    Enums are written as their strings; a Unix socket ``mode`` is written as an
    integer with its octal spelling in a comment.
    """
    origin = f" (read from {config.source})" if config.source else ""
    parts = [f"# Effective Pounce configuration{origin}.\n"]
    top = _mapping(config, schema.top_settings())
    if top:
        parts.append(tomli_w.dumps(top))
    for table in schema.tables():
        value = schema.table_value(config, table)
        entries: tuple[object, ...] = value if isinstance(value, tuple) else (value,)
        header = f"[[{table.name}]]" if table.array else f"[{table.name}]"
        for entry in entries:
            body = tomli_w.dumps(_mapping(entry, table.settings))
            parts.append(f"{header}\n{_with_octal_comments(body, table.settings)}")
    return "\n".join(parts)
