"""Checking and converting one setting's value, whatever layer it came from.

TOML and programmatic overrides give typed values (:func:`validate`); the
environment and the command line give text (:func:`parse_text`).  Both end in
the same checks, so a rule is written once and its error reads the same
everywhere.  Errors are raised as :class:`Invalid` carrying the text *after*
the key path (``must be 0-65535, got 70000``); callers prefix the path.
"""

from __future__ import annotations

import datetime
import difflib
import enum
import json
import math
import re
import typing

from pounce.config.declare import SettingSpec

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})
_OCTAL_DIGITS = re.compile(r"[0-7]+")

_EXPECTED: dict[type, str] = {
    bool: "a boolean",
    int: "an integer",
    float: "a number",
    str: "a string",
    tuple: "an array of strings",
}


class Invalid(ValueError):
    """A value breaks its setting's rule; ``message`` follows the key path."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def quote(text: str) -> str:
    """``text`` in double quotes, escaped the way TOML and JSON write strings."""
    return json.dumps(text, ensure_ascii=False)


def describe(value: object) -> str:
    """Name a value with its TOML type, for "got ..." in error messages."""
    if isinstance(value, bool):
        return f"boolean {'true' if value else 'false'}"
    if isinstance(value, int):
        return f"integer {value}"
    if isinstance(value, float):
        return f"float {value!r}"
    if isinstance(value, str):
        return f"string {quote(value)}"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list | tuple):
        return "an array"
    if isinstance(value, datetime.datetime | datetime.date | datetime.time):
        return f"date-time {value.isoformat()}"
    if value is None:
        return "nothing"
    return type(value).__name__


def number_text(spec: SettingSpec, value: int | float) -> str:
    """A number as the docs and messages print it (octal for file modes)."""
    if spec.setting.octal and isinstance(value, int):
        return oct(value)
    return str(value)


def range_rule(spec: SettingSpec) -> str | None:
    """The numeric range as a rule: ``0-65535``, ``>= 1``, ``> 0``, or ``None``."""
    low, high = spec.setting.minimum, spec.setting.maximum
    if low is not None and high is not None:
        return f"{number_text(spec, low)}-{number_text(spec, high)}"
    if low is not None:
        return f"{'>' if spec.setting.exclusive_minimum else '>='} {number_text(spec, low)}"
    if high is not None:
        return f"<= {number_text(spec, high)}"
    return None


def toml_literal(spec: SettingSpec, value: object) -> str:
    """``value`` written as TOML would write it (for docs and help texts)."""
    if value is None:
        return "(not set)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, enum.Enum):
        return quote(str(value.value))
    if isinstance(value, str):
        return quote(value)
    if isinstance(value, int | float):
        return number_text(spec, value)
    if isinstance(value, tuple | list):
        return "[" + ", ".join(quote(str(item)) for item in value) + "]"
    return repr(value)


def _check_type(spec: SettingSpec, value: object) -> object:
    """``value`` converted to the setting's Python type, or :class:`Invalid`."""
    kind = spec.kind
    if spec.is_enum:
        enum_kind = typing.cast(type[enum.Enum], kind)
        if isinstance(value, enum_kind):
            return value
        if isinstance(value, str):
            for member in enum_kind:
                if str(member.value) == value.lower():
                    return member
        got = quote(value) if isinstance(value, str) else describe(value)
        raise Invalid(f"must be one of {', '.join(spec.choices)}, got {got}")
    if spec.is_list:
        if not isinstance(value, list | tuple):
            raise Invalid(f"expected an array of strings, got {describe(value)}")
        for i, item in enumerate(value):
            if not isinstance(item, str):
                raise Invalid(f"[{i}]: expected a string, got {describe(item)}")
        return tuple(value)
    ok = isinstance(value, kind) and not (kind is not bool and isinstance(value, bool))
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        ok, value = True, float(value)
    if not ok:
        raise Invalid(f"expected {_EXPECTED[kind]}, got {describe(value)}")
    if isinstance(value, float) and not math.isfinite(value):
        raise Invalid(f"expected a finite number, got {describe(value)}")
    return value


def _check_range(spec: SettingSpec, value: object, original: object) -> None:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return
    low, high = spec.setting.minimum, spec.setting.maximum
    too_low = low is not None and (value <= low if spec.setting.exclusive_minimum else value < low)
    too_high = high is not None and value > high
    if too_low or too_high:
        got = original if isinstance(original, int | float) else value
        message = f"must be {range_rule(spec)}, got {number_text(spec, got)}"
        if too_high and spec.setting.octal and isinstance(got, int):
            message += _octal_hint(got, high)
        raise Invalid(message)


def _octal_hint(value: int, high: int | float | None) -> str:
    """For a file mode written in decimal (``mode = 660``): how to write it in octal."""
    digits = str(value)
    if _OCTAL_DIGITS.fullmatch(digits) and high is not None and int(digits, 8) <= high:
        return f" (decimal {value}); write 0o{digits}"
    return f" (decimal {value}); write the mode in octal, e.g. 0o660"


def validate(spec: SettingSpec, value: object) -> object:
    """Check a typed value (from TOML or an override) and return it converted.

    Integers are accepted for numbers, never booleans for either; enum
    members may be given by value, in any case.  ``None`` is accepted only for
    optional settings.
    """
    if value is None and spec.optional:
        return None
    converted = _check_type(spec, value)
    _check_range(spec, converted, value)
    if spec.setting.check is not None:
        problem = spec.setting.check(converted)
        if problem is not None:
            raise Invalid(problem)
    return converted


def _parse_int(spec: SettingSpec, text: str) -> int:
    stripped = text.strip()
    try:
        if spec.setting.octal:
            # A file mode: "660" and "0660" mean octal, as they do for chmod.
            if _OCTAL_DIGITS.fullmatch(stripped):
                return int(stripped, 8)
            return int(stripped, 0)
        return int(stripped, 10)
    except ValueError:
        raise Invalid(f"expected an integer, got {quote(text)}") from None


def parse_text(spec: SettingSpec, text: str) -> object:
    """Convert text from an environment variable or a flag, then :func:`validate` it.

    Booleans accept 1/0, true/false, yes/no and on/off in any case; a list is
    comma-separated (empty items dropped, so ``""`` is the empty list).
    """
    value: object = text
    if spec.kind is bool:
        lowered = text.strip().lower()
        if lowered not in _TRUE | _FALSE:
            raise Invalid(
                f"expected a boolean (true/false, yes/no, on/off, 1/0), got {quote(text)}"
            )
        value = lowered in _TRUE
    elif spec.kind is int:
        value = _parse_int(spec, text)
    elif spec.is_list:
        value = tuple(item.strip() for item in text.split(",") if item.strip())
    elif spec.kind is float:
        try:
            value = float(text.strip())
        except ValueError:
            raise Invalid(f"expected a number, got {quote(text)}") from None
    return validate(spec, value)


def unknown_key(path: str, key: str, candidates: typing.Iterable[str], *, what: str = "key") -> str:
    """``http.foo: unknown key``, with ``, did you mean ...?`` when one is close."""
    close = difflib.get_close_matches(key, list(candidates), n=1)
    if close:
        return f"{path}: unknown {what}, did you mean {close[0]}?"
    return f"{path}: unknown {what}"
