"""Command-line flags generated from the setting declarations.

:func:`add_cli_flags` adds one flag per setting (``app`` and ``[[listen]]``
are the CLI's own business), all with ``default=argparse.SUPPRESS`` so that a
flag the user did not give leaves no attribute and overrides nothing.
:func:`overrides_from_args` turns the flags that were given into the dotted-key
overrides :func:`~pounce.config.load_config` takes.  Values are checked as
they are parsed, so a bad one is reported by argparse with the flag's name.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from pounce.config import schema
from pounce.config.declare import SettingSpec
from pounce.config.values import Invalid, parse_text, range_rule, toml_literal

#: Namespace attributes are ``pounce.config:<dotted key>``, apart from the CLI's own.
DEST_PREFIX = "pounce.config:"

_METAVARS: dict[type, str] = {int: "N", float: "NUMBER", str: "TEXT", tuple: "A,B,..."}


def _dest(spec: SettingSpec) -> str:
    return DEST_PREFIX + spec.dotted


def _converter(spec: SettingSpec) -> Callable[[str], object]:
    def convert(text: str) -> object:
        try:
            return parse_text(spec, text)
        except Invalid as exc:
            raise argparse.ArgumentTypeError(exc.message) from None

    convert.__name__ = spec.key
    return convert


def _metavar(spec: SettingSpec) -> str:
    if spec.is_enum:
        return "{" + ",".join(spec.choices) + "}"
    if spec.setting.metavar:
        return spec.setting.metavar
    if spec.setting.unit:
        return spec.setting.unit.upper()
    return _METAVARS[spec.kind]


def flag_help(spec: SettingSpec) -> str:
    """The help text of a setting's flag: its doc, rule, default and variable."""
    text = spec.setting.doc.replace("`", "")
    rule = range_rule(spec) or spec.setting.rule
    notes = [f"default {toml_literal(spec, spec.default)}", f"env {spec.env_var}"]
    if rule and not spec.is_enum:
        notes.insert(0, rule)
    return f"{text} [{'; '.join(notes)}]".replace("%", "%%")


def add_cli_flags(parser: argparse.ArgumentParser) -> None:
    """Add a flag for every declared setting that has one, in a "settings" group.

    Booleans that default to true get ``--x/--no-x``; those that default to
    false are ``store_true`` switches.
    """
    group = parser.add_argument_group(
        "settings",
        "Override the config file and the POUNCE_* environment variables.",
    )
    for spec in schema.single_settings():
        if not spec.flags:
            continue
        if spec.kind is bool:
            action: str | type[argparse.Action] = (
                argparse.BooleanOptionalAction if spec.default else "store_true"
            )
            group.add_argument(
                *spec.flags,
                dest=_dest(spec),
                action=action,
                default=argparse.SUPPRESS,
                help=flag_help(spec),
            )
        else:
            group.add_argument(
                *spec.flags,
                dest=_dest(spec),
                type=_converter(spec),
                metavar=_metavar(spec),
                default=argparse.SUPPRESS,
                help=flag_help(spec),
            )


def overrides_from_args(ns: argparse.Namespace) -> dict[str, object]:
    """The settings given as flags, as ``load_config`` overrides: ``{"server.workers": 2}``."""
    given = vars(ns)
    return {
        spec.dotted: given[_dest(spec)] for spec in schema.single_settings() if _dest(spec) in given
    }
