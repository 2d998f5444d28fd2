"""Reading ``[[listen]]`` entries: per-key checks, then the rules between keys.

An entry is exactly one kind of socket (TCP, Unix, inherited fd), or only a
systemd name; Unix-only keys need ``path``; two entries may not name the same
socket.  TCP entries come out with both host and port filled in.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping, Sequence
from typing import Any

from pounce.config.model import DEFAULT_HOST, DEFAULT_PORT, ListenConfig
from pounce.config.schema import table
from pounce.config.values import Invalid, describe, unknown_key, validate

#: Keys that choose the kind of socket; an entry gives exactly one group.
_KIND_GROUPS: tuple[tuple[str, ...], ...] = (("host", "port"), ("path",), ("fd",))
_UNIX_ONLY = ("mode", "owner", "group")


def _join(words: Sequence[str]) -> str:
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} and {words[-1]}"


def _cross_check(given: set[str], path: str) -> list[str]:
    """Errors about which keys may go together in one entry."""
    problems = []
    groups = [g for g in _KIND_GROUPS if given.intersection(g)]
    if len(groups) > 1:
        got = [k for g in groups for k in g if k in given]
        problems.append(f"{path}: give exactly one of host/port, path or fd, got {_join(got)}")
    elif not groups and "name" not in given:
        problems.append(f"{path}: give one of host/port, path, fd or name")
    if "path" not in given:
        for key in _UNIX_ONLY:
            if key in given:
                problems.append(f"{path}.{key}: only allowed with path (a Unix socket)")
    return problems


def read_entry(raw: Mapping[str, object], path: str, errors: list[str]) -> ListenConfig | None:
    """Check one entry; append problems to ``errors``; return it, or ``None`` if invalid."""
    spec_table = table("listen")
    assert spec_table is not None
    values: dict[str, object] = {}
    before = len(errors)
    for key, value in raw.items():
        spec = spec_table.setting(key)
        if spec is None:
            errors.append(unknown_key(f"{path}.{key}", key, (s.key for s in spec_table.settings)))
            continue
        if value is None:  # only from overrides: "not given"
            continue
        try:
            values[key] = validate(spec, value)
        except Invalid as exc:
            errors.append(f"{path}.{key}: {exc.message}")
    given = {k for k, v in raw.items() if v is not None and spec_table.setting(k) is not None}
    errors.extend(_cross_check(given, path))
    if len(errors) > before:
        return None
    if "host" in values or "port" in values:
        values.setdefault("host", DEFAULT_HOST)
        values.setdefault("port", DEFAULT_PORT)
    return ListenConfig(**typing.cast(dict[str, Any], values))


def _identity(entry: ListenConfig) -> str | None:
    """What makes two entries the same socket; ``None`` if they never clash."""
    if entry.kind == "tcp" and entry.port == 0:
        return None  # every port 0 is a different ephemeral port
    return entry.describe()


def _entry_mapping(item: object) -> Mapping[str, object] | None:
    if isinstance(item, ListenConfig):
        return {f.name: getattr(item, f.name) for f in dataclasses.fields(item)}
    if isinstance(item, Mapping):
        return item
    return None


def read_listeners(value: object, path: str, errors: list[str]) -> tuple[ListenConfig, ...] | None:
    """Check an array of ``[[listen]]`` tables (or ``ListenConfig`` objects from overrides).

    Returns the entries, or ``None`` when any is invalid (problems go to ``errors``).
    """
    if isinstance(value, Mapping):
        errors.append(f"{path}: expected an array of tables ([[{path}]]), got a table ([{path}])")
        return None
    if not isinstance(value, list | tuple):
        errors.append(f"{path}: expected an array of tables ([[{path}]]), got {describe(value)}")
        return None
    if not value:
        where = f"{DEFAULT_HOST}:{DEFAULT_PORT}"
        errors.append(f"{path}: must not be empty (leave it out to listen on {where})")
        return None
    entries: list[ListenConfig] = []
    valid = True
    for index, item in enumerate(value):
        raw = _entry_mapping(item)
        if raw is None:
            errors.append(f"{path}[{index}]: expected a table, got {describe(item)}")
            valid = False
            continue
        entry = read_entry(raw, f"{path}[{index}]", errors)
        if entry is None:
            valid = False
        else:
            entries.append(entry)
    if not valid:
        return None
    seen: dict[str, int] = {}
    for index, entry in enumerate(entries):
        identity = _identity(entry)
        if identity is None:
            continue
        if identity in seen:
            errors.append(f"{path}[{index}]: same socket as {path}[{seen[identity]}] ({identity})")
            valid = False
        seen.setdefault(identity, index)
    return tuple(entries) if valid else None
