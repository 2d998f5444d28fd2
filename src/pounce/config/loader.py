"""Loading a :class:`Config`: defaults < TOML file < environment < overrides.

Each layer is checked on its own, so an error names where the bad value came
from (``server.workers`` in the file, ``POUNCE_SERVER_WORKERS`` in the
environment).  Every problem of every layer is collected and raised together
in one :class:`~pounce.errors.ConfigError`, together with the rules between
settings (:mod:`pounce.config.rules`) that the merged values break.

The address of the single listener (``POUNCE_HOST``/``POUNCE_PORT``,
``--host``/``--port``) changes only what it names in the listener before it;
the platform variables ``PORT`` and ``WEB_CONCURRENCY`` are used only where no
layer gave a value.  Unknown ``POUNCE_<TABLE>_*`` variables are warnings, not
errors: Kubernetes injects ``<SERVICE>_PORT=tcp://...`` for every Service.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import tomllib
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from pounce.config import schema
from pounce.config.declare import ENV_PREFIX, SettingSpec
from pounce.config.listen import read_listeners
from pounce.config.model import DEFAULT_HOST, DEFAULT_PORT, Config, ListenConfig
from pounce.config.rules import check_rules
from pounce.config.values import Invalid, describe, parse_text, quote, unknown_key, validate
from pounce.errors import ConfigError, UsageError

_TOML_WHERE = re.compile(r"\s*\(at (?:line (\d+), column (\d+)|end of document)\)$")

#: The value Kubernetes gives ``<SERVICE>_PORT`` (a Service link), never a setting's value.
_SERVICE_LINK = re.compile(r"(?:tcp|udp|sctp)://\S+:\d+")

#: Variables of the single listener's address (and the override keys of the same).
HOST_VAR, PORT_VAR = "POUNCE_HOST", "POUNCE_PORT"
#: Variables Pounce reads outside the settings (the CLI's config file, ctl's socket).
OTHER_VARS = frozenset({"POUNCE_CONFIG"})
HOST_KEY, PORT_KEY = "listen.host", "listen.port"
#: Platform conventions (Heroku, Cloud Run, Render, ...): used only where nothing is set.
PLATFORM_PORT_VAR, PLATFORM_WORKERS_VAR = "PORT", "WEB_CONCURRENCY"

_log = logging.getLogger("pounce.config")


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
        self.warnings: list[str] = []
        #: Whether some layer named a TCP port (then ``PORT`` is not used).
        self.port_given = False

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
            if isinstance(value, list | tuple):
                self.port_given = any(_names_port(item) for item in value)

    def put_address(
        self, hosts: Sequence[object], ports: Sequence[object], where: str, *, replace: bool = False
    ) -> None:
        """``--host``/``--port`` or ``POUNCE_HOST``/``POUNCE_PORT``: change only what they name.

        With one TCP listener so far and one value each, that listener keeps
        everything it was not told (its host, its port, ``backlog``, ``tls``)
        and the other listeners stay.  Otherwise the TCP listeners given
        replace the ``[[listen]]`` entries, the missing half taken from the
        single TCP listener so far, else the default.
        """
        if "listen" in self.invalid or not (hosts or ports):
            return
        self.port_given = self.port_given or bool(ports)
        current = self.listen or ()
        tcp = [entry for entry in current if entry.kind == "tcp"]
        if len(tcp) == 1 and len(hosts) <= 1 and len(ports) <= 1 and not replace:
            changes: dict[str, object] = {"host": hosts[0]} if hosts else {}
            changes.update({"port": ports[0]} if ports else {})
            entries: list[object] = [
                {**_fields(entry), **changes} if entry is tcp[0] else entry for entry in current
            ]
        else:
            if len(hosts) > 1 and len(ports) > 1 and len(hosts) != len(ports):
                self.errors.append(f"{where}: give one port for all hosts, or one port per host")
                self.invalid.add("listen")
                return
            base = tcp[0] if len(tcp) == 1 else ListenConfig(host=DEFAULT_HOST, port=DEFAULT_PORT)
            hosts = hosts or [base.host]
            ports = ports or [base.port]
            if len(hosts) == len(ports):
                pairs = list(zip(hosts, ports, strict=True))
            elif len(ports) == 1:
                pairs = [(h, ports[0]) for h in hosts]
            else:
                pairs = [(hosts[0], p) for p in ports]
            entries = [{"host": h, "port": p} for h, p in pairs]
        listen = read_listeners(entries, where, self.errors)
        if listen is None:
            self.invalid.add("listen")
        else:
            self.listen = listen

    def read_platform(self, env: Mapping[str, str]) -> None:
        """``PORT`` and ``WEB_CONCURRENCY``, where no layer gave a port or ``server.workers``."""
        if PLATFORM_WORKERS_VAR in env and "server.workers" not in self.values:
            self.put("server.workers", PLATFORM_WORKERS_VAR, env[PLATFORM_WORKERS_VAR], text=True)
        if PLATFORM_PORT_VAR not in env or self.port_given or "listen" in self.invalid:
            return
        spec = _listen_spec("port")
        try:
            port = typing.cast(int, parse_text(spec, env[PLATFORM_PORT_VAR]))
        except Invalid as exc:
            self.errors.append(f"{PLATFORM_PORT_VAR}: {exc.message}")
            self.invalid.add("listen")
            return
        if self.listen is None:
            self.listen = (ListenConfig(host=DEFAULT_HOST, port=port),)
        else:
            self.listen = tuple(
                dataclasses.replace(e, port=port) if e.kind == "tcp" else e for e in self.listen
            )

    def read_config(self, base: Config) -> None:
        """A :class:`Config` as the lowest layer, in place of a file (``pounce.run(config=)``)."""
        for spec in schema.single_settings():
            value: object = base
            for part in spec.dotted.split("."):
                value = getattr(value, part)
            self.put(spec.dotted, spec.dotted, value)
        if base.listen:
            self.put_listen("listen", base.listen)

    def read_document(self, document: Mapping[str, object]) -> None:
        """The TOML layer: every key of the file, in file order."""
        for key, value in document.items():
            found = schema.table(key) if "." not in key else None
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
        subs = {t.name.rpartition(".")[2]: t for t in schema.sub_tables(found.name)}
        for key, item in value.items():
            spec = found.setting(key)
            if key in subs:
                self._read_table(subs[key], item)
            elif spec is None:
                keys = [*(s.key for s in found.settings), *subs]
                self.errors.append(_unknown(f"{found.name}.{key}", key, keys))
            else:
                self.put(spec.dotted, spec.dotted, item)

    def read_env(self, env: Mapping[str, str]) -> None:
        """The environment layer.

        A bad value of a setting's variable is an error; a ``POUNCE_<TABLE>_*``
        variable that is no setting, or a value that is a Kubernetes Service
        link (``tcp://10.0.0.7:80``), is a warning and is ignored.
        """
        known: dict[str, str] = {}
        for spec in schema.single_settings():
            name = spec.env_var
            assert name is not None
            known[name] = spec.dotted
            if name in env and not self._service_link(name, env[name]):
                self.put(spec.dotted, name, env[name], text=True)
        hosts: list[object] = []
        ports: list[object] = []
        for name, key, into in ((HOST_VAR, "host", hosts), (PORT_VAR, "port", ports)):
            known[name] = key
            if name in env and not self._service_link(name, env[name]):
                try:
                    into.append(parse_text(_listen_spec(key), env[name]))
                except Invalid as exc:
                    self.errors.append(f"{name}: {exc.message}")
                    self.invalid.add("listen")
        self.put_address(hosts, ports, f"{HOST_VAR}/{PORT_VAR}")
        for name in sorted(env):
            if name.startswith(ENV_PREFIX) and name not in known and name not in OTHER_VARS:
                if _SERVICE_LINK.fullmatch(env[name].strip()):
                    message = (
                        f"{name}: unknown variable (ignored), "
                        f"{quote(env[name])} is a Kubernetes Service link"
                    )
                else:
                    message = unknown_key(name, name, known, what="variable (ignored)")
                self.warnings.append(message)

    def _service_link(self, name: str, value: str) -> bool:
        """Whether ``value`` is a Kubernetes Service link, warned about and to be ignored."""
        if _SERVICE_LINK.fullmatch(value.strip()) is None:
            return False
        self.warnings.append(
            f"{name}: ignored, {quote(value)} is a Kubernetes Service link, not a setting "
            "(set enableServiceLinks: false in the pod spec)"
        )
        return True

    def read_overrides(self, overrides: Mapping[str, object]) -> None:
        """The override layer (command line); ``None`` values mean "not given"."""
        hosts, ports = _as_list(overrides.get(HOST_KEY)), _as_list(overrides.get(PORT_KEY))
        extra = overrides.get("listen") if hosts or ports else None
        for key, value in overrides.items():
            if value is None or key in (HOST_KEY, PORT_KEY) or (key == "listen" and extra):
                continue
            found = schema.table(key)
            if found is not None and found.array:
                self.put_listen(key, value)
            elif key in schema.by_dotted_key():
                self.put(key, key, value)
            else:
                keys = [*schema.by_dotted_key(), *(t.name for t in schema.tables() if t.array)]
                self.errors.append(unknown_key(key, key, keys))
        if extra is None:
            self.put_address(hosts, ports, "listen")
            return
        # Other listeners given too (--uds with --port): together they replace the file's.
        self.put_address(hosts, ports, "listen", replace=True)
        if self.listen is not None and isinstance(extra, list | tuple):
            port_given = self.port_given
            self.put_listen("listen", [*self.listen, *extra])
            self.port_given = port_given

    def build(self, source: str | None) -> Config:
        """The :class:`Config` of the valid values gathered, defaults for the rest."""
        kwargs: dict[str, Any] = {
            s.key: self.values[s.dotted] for s in schema.top_settings() if s.dotted in self.values
        }
        built: dict[str, object] = {}
        for found in reversed(schema.tables()):  # sub-tables before the tables holding them
            if found.array:
                if self.listen is not None:
                    kwargs[found.name] = self.listen
                continue
            sub = {s.key: self.values[s.dotted] for s in found.settings if s.dotted in self.values}
            for inner in schema.sub_tables(found.name):
                sub[inner.name.rpartition(".")[2]] = built[inner.name]
            built[found.name] = found.cls(**sub)
            if "." not in found.name:
                kwargs[found.name] = built[found.name]
        return Config(**kwargs, source=source)


def _names_port(item: object) -> bool:
    """Whether a ``[[listen]]`` entry (table or :class:`ListenConfig`) gives a port."""
    if isinstance(item, ListenConfig):
        return item.port is not None
    return isinstance(item, Mapping) and item.get("port") is not None


def _fields(entry: ListenConfig) -> dict[str, object]:
    return {f.name: getattr(entry, f.name) for f in dataclasses.fields(entry)}


def _as_list(value: object) -> list[object]:
    """An override of ``listen.host``/``listen.port``: one value or a list of them."""
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]


def _listen_spec(key: str) -> SettingSpec:
    found = schema.table("listen")
    spec = None if found is None else found.setting(key)
    assert spec is not None
    return spec


def load_config(
    path: str | os.PathLike[str] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, object] | None = None,
    warn: Callable[[str], None] | None = None,
    base: Config | None = None,
) -> Config:
    """Read, merge and validate the configuration.

    ``path`` is a TOML file (``None``: no file).  ``env`` defaults to
    ``os.environ``; ``POUNCE_<TABLE>_<KEY>`` variables (``POUNCE_APP`` for
    ``app``) override the file, ``POUNCE_HOST``/``POUNCE_PORT`` the address of
    its TCP listener.  ``overrides`` override both: dotted keys to typed
    values, e.g. ``{"server.workers": 2, "logging.level": "debug"}``;
    ``"listen"`` takes a list of tables or :class:`ListenConfig` objects and
    replaces the file's listeners; ``"listen.host"``/``"listen.port"`` (a
    value or a list) change only the host or port of its TCP listener.
    ``PORT`` and ``WEB_CONCURRENCY`` count only where no layer gave a port or
    ``server.workers``.

    ``base`` (with no ``path``) is a :class:`Config` read as the lowest layer
    instead of a file; its values are checked again.

    Warnings (unknown ``POUNCE_*`` variables, Kubernetes Service links) go to
    ``warn``, by default the ``pounce.config`` logger.

    Raises :class:`~pounce.errors.UsageError` when the file is missing,
    unreadable or not valid TOML, and :class:`~pounce.errors.ConfigError`
    listing every invalid value.
    """
    layers = _Layers()
    source = None if path is None else os.fspath(path)
    environ = typing.cast(Mapping[str, str], os.environ) if env is None else env
    if source is not None:
        layers.read_document(read_toml(source))
    elif base is not None:
        source = base.source
        layers.read_config(base)
    layers.read_env(environ)
    if overrides:
        layers.read_overrides(overrides)
    layers.read_platform(environ)
    config = layers.build(source)
    errors = [*layers.errors, *check_rules(config, layers.invalid)]
    if errors:
        raise ConfigError(errors, source=source)
    for message in layers.warnings:
        (warn or _log.warning)(message)
    return config
