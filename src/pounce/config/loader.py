"""Loading a :class:`Config`: defaults < TOML file < environment < overrides.

Each layer is checked on its own, so an error names where the bad value came
from (``server.workers`` in the file, ``POUNCE_SERVER_WORKERS`` in the
environment).  Every problem of every layer is collected and raised together
in one :class:`~pounce.errors.ConfigError`, together with the rules between
settings (:mod:`pounce.config.rules`) that the merged values break.
"""

from __future__ import annotations

import os
import re
import tomllib
import typing
from collections.abc import Iterable, Mapping
from typing import Any

from pounce.config import schema
from pounce.config.declare import ENV_PREFIX
from pounce.config.listen import read_listeners
from pounce.config.model import Config, ListenConfig
from pounce.config.rules import check_rules
from pounce.config.values import Invalid, describe, parse_text, unknown_key, validate
from pounce.errors import ConfigError, UsageError

_TOML_WHERE = re.compile(r"\s*\(at (?:line (\d+), column (\d+)|end of document)\)$")


def _toml_error(path: str, text: str, exc: tomllib.TOMLDecodeError) -> str:
    """One line: ``pounce.toml:7: invalid TOML: invalid value (column 10)``."""
    message = str(exc)
    match = _TOML_WHERE.search(message)
    if match is None:
        return f"{path}: invalid TOML: {message}"
    what = message[: match.start()]
    what = what[:1].lower() + what[1:]
    if match.group(1) is None:
        last_line = text.rstrip().count("\n") + 1
        return f"{path}:{last_line}: invalid TOML: {what} (at end of file)"
    return f"{path}:{match.group(1)}: invalid TOML: {what} (column {match.group(2)})"


def read_toml(path: str) -> dict[str, Any]:
    """Parse the TOML file at ``path``; :class:`UsageError` if it cannot be read or parsed."""
    try:
        with open(path, "rb") as file:
            data = file.read()
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise UsageError(f"{path}: is a directory, not a config file") from None
    except PermissionError:
        raise UsageError(f"{path}: permission denied") from None
    except OSError as exc:
        raise UsageError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path}: not UTF-8 text (bad byte at offset {exc.start})") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(_toml_error(path, text, exc)) from None


def _unknown(path: str, key: str, candidates: Iterable[str]) -> str:
    """An unknown-key error; a key that belongs to another table is pointed there.

    That beats a close spelling here: top-level ``worker_mode`` is
    ``server.worker_mode``, not the ``[workers]`` table.
    """
    elsewhere = [s.dotted for s in schema.single_settings() if s.key == key]
    if elsewhere:
        return f"{path}: unknown key, did you mean {_either(elsewhere)}?"
    return unknown_key(path, key, candidates)


def _either(words: list[str]) -> str:
    """``a``, ``a or b``, ``a, b or c``."""
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} or {words[-1]}"


class _Layers:
    """Values gathered so far, by dotted key, and every problem found."""

    def __init__(self) -> None:
        self.values: dict[str, object] = {}
        self.listen: tuple[ListenConfig, ...] | None = None
        self.errors: list[str] = []
        #: Dotted keys (and ``listen``) given an invalid value in some layer.
        self.invalid: set[str] = set()

    def put(self, key: str, where: str, value: object, *, text: bool = False) -> None:
        """Check ``value`` for setting ``key`` and keep it; ``where`` names it in errors."""
        spec = schema.by_dotted_key()[key]
        try:
            self.values[key] = parse_text(spec, str(value)) if text else validate(spec, value)
        except Invalid as exc:
            self.errors.append(f"{where}: {exc.message}")
            self.invalid.add(key)

    def put_listen(self, key: str, value: object) -> None:
        """Check an array of ``[[listen]]`` tables and keep it."""
        listen = read_listeners(value, key, self.errors)
        if listen is None:
            self.invalid.add(key)
        else:
            self.listen = listen

    def read_document(self, document: Mapping[str, object]) -> None:
        """The TOML layer: every key of the file, in file order."""
        for key, value in document.items():
            found = schema.table(key)
            if key in (s.key for s in schema.top_settings()):
                self.put(key, key, value)
            elif found is not None and found.array:
                self.put_listen(key, value)
            elif found is not None:
                self._read_table(found, value)
            else:
                self.errors.append(_unknown(key, key, schema.top_level_keys()))

    def _read_table(self, found: schema.TableSpec, value: object) -> None:
        if not isinstance(value, Mapping):
            got = "an array of tables" if isinstance(value, list) else describe(value)
            message = f"{found.name}: expected a table ([{found.name}]), got {got}"
            # `workers = 4` at the top is [server] workers, not the [workers] table.
            elsewhere = [s.dotted for s in schema.single_settings() if s.key == found.name]
            if elsewhere and not isinstance(value, list):
                message += f"; did you mean {_either(elsewhere)}?"
            self.errors.append(message)
            return
        for key, item in value.items():
            spec = found.setting(key)
            if spec is None:
                keys = (s.key for s in found.settings)
                self.errors.append(_unknown(f"{found.name}.{key}", key, keys))
            else:
                self.put(spec.dotted, spec.dotted, item)

    def read_env(self, env: Mapping[str, str]) -> None:
        """The environment layer; a ``POUNCE_<TABLE>_*`` variable that is no setting is an error."""
        known: dict[str, str] = {}
        for spec in schema.single_settings():
            name = spec.env_var
            assert name is not None
            known[name] = spec.dotted
            if name in env:
                self.put(spec.dotted, name, env[name], text=True)
        prefixes = tuple(f"{ENV_PREFIX}{t.name.upper()}_" for t in schema.tables() if not t.array)
        for name in sorted(env):
            if name.startswith(prefixes) and name not in known:
                self.errors.append(unknown_key(name, name, known, what="variable"))

    def read_overrides(self, overrides: Mapping[str, object]) -> None:
        """The override layer (command line); ``None`` values mean "not given"."""
        for key, value in overrides.items():
            if value is None:
                continue
            found = schema.table(key)
            if found is not None and found.array:
                self.put_listen(key, value)
            elif key in schema.by_dotted_key():
                self.put(key, key, value)
            else:
                keys = [*schema.by_dotted_key(), *(t.name for t in schema.tables() if t.array)]
                self.errors.append(unknown_key(key, key, keys))

    def build(self, source: str | None) -> Config:
        """The :class:`Config` of the valid values gathered, defaults for the rest."""
        kwargs: dict[str, Any] = {
            s.key: self.values[s.dotted] for s in schema.top_settings() if s.dotted in self.values
        }
        for found in schema.tables():
            if found.array:
                if self.listen is not None:
                    kwargs[found.name] = self.listen
                continue
            sub = {s.key: self.values[s.dotted] for s in found.settings if s.dotted in self.values}
            kwargs[found.name] = found.cls(**sub)
        return Config(**kwargs, source=source)


def load_config(
    path: str | os.PathLike[str] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, object] | None = None,
) -> Config:
    """Read, merge and validate the configuration.

    ``path`` is a TOML file (``None``: no file).  ``env`` defaults to
    ``os.environ``; ``POUNCE_<TABLE>_<KEY>`` variables (``POUNCE_APP`` for
    ``app``) override the file.  ``overrides`` override both: dotted keys to
    typed values, e.g. ``{"server.workers": 2, "logging.level": "debug"}``;
    ``"listen"`` takes a list of tables or :class:`ListenConfig` objects and
    replaces the file's listeners.

    Raises :class:`~pounce.errors.UsageError` when the file is missing,
    unreadable or not valid TOML, and :class:`~pounce.errors.ConfigError`
    listing every invalid value.
    """
    layers = _Layers()
    source = None if path is None else os.fspath(path)
    if source is not None:
        layers.read_document(read_toml(source))
    layers.read_env(typing.cast(Mapping[str, str], os.environ) if env is None else env)
    if overrides:
        layers.read_overrides(overrides)
    config = layers.build(source)
    errors = [*layers.errors, *check_rules(config, layers.invalid)]
    if errors:
        raise ConfigError(errors, source=source)
    return config
