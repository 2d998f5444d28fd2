"""How a setting is declared, once, and what is derived from that declaration.

A setting is a dataclass field whose ``metadata`` holds a :class:`Setting`
(write it with :func:`setting`).  Its Python type comes from the annotation,
its default from the field, and everything else -- TOML key, environment
variable, command-line flag(s), validation and the docs row -- is computed
from those by :func:`specs_of` into :class:`SettingSpec` objects.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

#: The key under which a field's :class:`Setting` lives in ``Field.metadata``.
SETTING_KEY = "pounce.setting"

#: Prefix of every environment variable Pounce reads its settings from.
ENV_PREFIX = "POUNCE_"

#: Python types a setting may have (besides ``StrEnum`` subclasses and ``X | None``).
SCALAR_TYPES: tuple[type, ...] = (bool, int, float, str)

Check = Callable[[Any], "str | None"]


@dataclass(frozen=True, slots=True)
class Setting:
    """Everything about one setting that its type and default do not already say.

    ``flags`` are the command-line flags, the first being the canonical one;
    ``None`` derives ``--key-name`` from the key, ``()`` means no flag.  Ranges
    are inclusive unless ``exclusive_minimum``.  ``check`` returns an error
    text such as ``'must start with "/"'`` or ``None``; ``rule`` says the same
    in the docs.  ``unit`` is shown in the docs and as the flag's metavar.
    ``octal`` prints values (defaults, errors, docs) in octal.
    """

    doc: str
    flags: tuple[str, ...] | None = None
    minimum: int | float | None = None
    maximum: int | float | None = None
    exclusive_minimum: bool = False
    unit: str | None = None
    octal: bool = False
    metavar: str | None = None
    check: Check | None = None
    rule: str | None = None


def setting(
    default: Any,
    *,
    doc: str,
    flags: tuple[str, ...] | None = None,
    minimum: int | float | None = None,
    maximum: int | float | None = None,
    exclusive_minimum: bool = False,
    unit: str | None = None,
    octal: bool = False,
    metavar: str | None = None,
    check: Check | None = None,
    rule: str | None = None,
) -> Any:
    """A dataclass field declaring one setting; see :class:`Setting` for the options."""
    meta = Setting(
        doc=doc,
        flags=flags,
        minimum=minimum,
        maximum=maximum,
        exclusive_minimum=exclusive_minimum,
        unit=unit,
        octal=octal,
        metavar=metavar,
        check=check,
        rule=rule,
    )
    return dataclasses.field(default=default, metadata={SETTING_KEY: meta})


@dataclass(frozen=True, slots=True)
class SettingSpec:
    """One declared setting, resolved: where it lives, its type and its default.

    ``table`` is ``None`` for top-level keys.  ``in_array`` is true for keys of
    array-of-tables entries (``[[listen]]``), which have no environment
    variable and no flag: they are lists, not single values.
    """

    table: str | None
    key: str
    kind: type
    optional: bool
    default: object
    setting: Setting
    in_array: bool = False

    @property
    def dotted(self) -> str:
        """The key path, e.g. ``http.keep_alive_timeout`` or ``app``."""
        return self.key if self.table is None else f"{self.table}.{self.key}"

    @property
    def env_var(self) -> str | None:
        """The environment variable that sets it, or ``None``."""
        return None if self.in_array else env_var_name(self.dotted)

    @property
    def flags(self) -> tuple[str, ...]:
        """Command-line flags, canonical first; empty when it has none."""
        if self.in_array:
            return ()
        if self.setting.flags is not None:
            return self.setting.flags
        return ("--" + self.key.replace("_", "-"),)

    @property
    def is_list(self) -> bool:
        """Whether the value is a list of strings (a tuple; comma-separated as text)."""
        return self.kind is tuple

    @property
    def is_enum(self) -> bool:
        """Whether the value is one of a ``StrEnum``'s members."""
        return issubclass(self.kind, enum.Enum)

    @property
    def choices(self) -> tuple[str, ...]:
        """The allowed spellings of an enum setting (empty for other kinds)."""
        if not self.is_enum:
            return ()
        return tuple(str(member.value) for member in typing.cast(type[enum.Enum], self.kind))


def env_var_name(dotted_key: str) -> str:
    """The environment variable of a setting.

    ``http.keep_alive_timeout`` -> ``POUNCE_HTTP_KEEP_ALIVE_TIMEOUT``, ``app`` -> ``POUNCE_APP``.
    """
    return ENV_PREFIX + dotted_key.replace(".", "_").upper()


def _unpack(hint: object) -> tuple[type, bool]:
    """``int | None`` -> ``(int, True)``; ``WorkerMode`` -> ``(WorkerMode, False)``."""
    optional = False
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        optional = len(args) < len(typing.get_args(hint))
        if len(args) != 1:
            raise TypeError(f"unsupported setting type {hint!r}")
        hint = args[0]
    if typing.get_origin(hint) is tuple and typing.get_args(hint) == (str, ...):
        return tuple, optional  # a list of strings: a TOML array, comma-separated as text
    if not isinstance(hint, type):
        raise TypeError(f"unsupported setting type {hint!r}")
    if not (hint in SCALAR_TYPES or issubclass(hint, enum.StrEnum)):
        raise TypeError(f"unsupported setting type {hint!r}")
    return hint, optional


@functools.cache
def specs_of(cls: type, table: str | None, *, in_array: bool = False) -> tuple[SettingSpec, ...]:
    """The settings declared on dataclass ``cls``, in declaration order.

    Fields without a :class:`Setting` (nested tables, bookkeeping such as
    ``Config.source``) are left out.
    """
    hints = typing.get_type_hints(cls)
    specs = []
    for field in dataclasses.fields(cls):
        meta = field.metadata.get(SETTING_KEY)
        if meta is None:
            continue
        kind, optional = _unpack(hints[field.name])
        specs.append(
            SettingSpec(
                table=table,
                key=field.name,
                kind=kind,
                optional=optional,
                default=field.default,
                setting=meta,
                in_array=in_array,
            )
        )
    return tuple(specs)
