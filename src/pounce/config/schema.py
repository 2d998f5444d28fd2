"""The shape of a config file, derived from :class:`~pounce.config.model.Config`.

Top-level settings are :class:`Config` fields with a ``Setting``; tables are
fields whose type is a dataclass (a table's own dataclass field is a sub-table,
``[limits.rate]``, named with its dotted path); arrays of tables are
``tuple[Dataclass, ...]`` fields.  Everything that walks the config (loader,
dumper, flags, docs) reads this module instead of naming tables itself.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import typing
from dataclasses import dataclass

from pounce.config.declare import SettingSpec, specs_of
from pounce.config.model import Config


@dataclass(frozen=True, slots=True)
class TableSpec:
    """One TOML table (``[http]``) or array of tables (``[[listen]]``)."""

    name: str
    cls: type
    array: bool
    settings: tuple[SettingSpec, ...]

    @property
    def doc(self) -> str:
        """The table's class docstring, for the docs."""
        return inspect.getdoc(self.cls) or ""

    def setting(self, key: str) -> SettingSpec | None:
        """The setting ``key`` of this table, or ``None``."""
        return next((s for s in self.settings if s.key == key), None)


@functools.cache
def top_settings() -> tuple[SettingSpec, ...]:
    """Settings at the top level of the file (``app``)."""
    return specs_of(Config, None)


@functools.cache
def tables() -> tuple[TableSpec, ...]:
    """Every table and array of tables, in :class:`Config` field order.

    A sub-table follows its parent (``limits``, then ``limits.rate``).
    """
    hints = typing.get_type_hints(Config)
    found: list[TableSpec] = []
    for field in dataclasses.fields(Config):
        hint = hints[field.name]
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            _add_table(found, field.name, hint)
        elif typing.get_origin(hint) is tuple:
            item = typing.get_args(hint)[0]
            specs = specs_of(item, field.name, in_array=True)
            found.append(TableSpec(field.name, item, True, specs))
    return tuple(found)


def _add_table(found: list[TableSpec], name: str, cls: type) -> None:
    found.append(TableSpec(name, cls, False, specs_of(cls, name)))
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        hint = hints[field.name]
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            _add_table(found, f"{name}.{field.name}", hint)


def sub_tables(name: str) -> tuple[TableSpec, ...]:
    """The tables directly inside table ``name`` (``limits`` -> ``limits.rate``)."""
    prefix = name + "."
    return tuple(
        t for t in tables() if t.name.startswith(prefix) and "." not in t.name[len(prefix) :]
    )


def table_value(config: object, table: TableSpec) -> object:
    """The value of ``table`` in ``config`` (``config.limits.rate`` for ``limits.rate``)."""
    value = config
    for part in table.name.split("."):
        value = getattr(value, part)
    return value


def table(name: str) -> TableSpec | None:
    """The table called ``name``, or ``None``."""
    return next((t for t in tables() if t.name == name), None)


@functools.cache
def single_settings() -> tuple[SettingSpec, ...]:
    """Settings that hold one value each: top level and plain tables, not arrays.

    These are the ones with an environment variable and (mostly) a flag.
    """
    nested = [s for t in tables() if not t.array for s in t.settings]
    return (*top_settings(), *nested)


@functools.cache
def by_dotted_key() -> dict[str, SettingSpec]:
    """:func:`single_settings` by dotted key (``http.keep_alive_timeout``)."""
    return {s.dotted: s for s in single_settings()}


def top_level_keys() -> tuple[str, ...]:
    """Every key allowed at the top level of a config file."""
    return (*(s.key for s in top_settings()), *(t.name for t in tables() if "." not in t.name))
