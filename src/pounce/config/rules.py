"""Rules between settings of different keys, checked once every layer is merged.

A rule reads the merged :class:`~pounce.config.model.Config` and blames one
key (its error starts with that key path).  It is skipped when a key it reads
had an invalid value of its own, so that one mistake is reported once.  The
rules between the keys of one ``[[listen]]`` entry live in
:mod:`pounce.config.listen`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pounce.config.model import Config
from pounce.config.values import quote


@dataclass(frozen=True, slots=True)
class Rule:
    """One rule: ``key`` is blamed, ``reads`` are the other keys it looks at.

    ``check`` returns the error text after the key path, or ``None``; ``doc``
    says the rule in the docs (in Markdown).
    """

    key: str
    reads: tuple[str, ...]
    doc: str
    check: Callable[[Config], str | None]

    @property
    def keys(self) -> tuple[str, ...]:
        """Every key the rule depends on, the blamed one first."""
        return (self.key, *self.reads)


def _heartbeat_below_timeout(config: Config) -> str | None:
    workers = config.workers
    if workers.heartbeat_interval < workers.timeout:
        return None
    return (
        f"must be less than workers.timeout ({workers.timeout}), got {workers.heartbeat_interval}"
    )


def _workers_within_max(config: Config) -> str | None:
    limit = config.workers.max
    if limit is None or config.server.workers <= limit:
        return None
    return f"must be at most workers.max ({limit}), got {config.server.workers}"


def _differs(key: str, *others: str) -> Callable[[Config], str | None]:
    """A check that setting ``key`` differs from each of ``others`` (dotted keys)."""

    def check(config: Config) -> str | None:
        value = _get(config, key)
        for other in others:
            if value == _get(config, other):
                return f"must differ from {other}, got {quote(str(value))} for both"
        return None

    return check


def _get(config: Config, dotted: str) -> object:
    table, _, key = dotted.partition(".")
    return getattr(getattr(config, table), key)


def _admin_is_not_a_listener(config: Config) -> str | None:
    admin = config.admin
    if admin.port == 0:
        return None
    for index, entry in enumerate(config.listen):
        if entry.kind == "tcp" and (entry.host, entry.port) == (admin.host, admin.port):
            return f"same socket as listen[{index}] ({entry.describe()})"
    return None


#: Every rule, in the order their errors are reported.
RULES: tuple[Rule, ...] = (
    Rule(
        "workers.heartbeat_interval",
        ("workers.timeout",),
        "`heartbeat_interval` must be less than `timeout`.",
        _heartbeat_below_timeout,
    ),
    Rule(
        "server.workers",
        ("workers.max",),
        "`workers` must be at most `workers.max` when that is set.",
        _workers_within_max,
    ),
    Rule(
        "health.ready_path",
        ("health.live_path",),
        "`ready_path` must differ from `live_path`.",
        _differs("health.ready_path", "health.live_path"),
    ),
    Rule(
        "metrics.path",
        ("health.live_path", "health.ready_path"),
        "`path` must differ from `health.live_path` and `health.ready_path`.",
        _differs("metrics.path", "health.live_path", "health.ready_path"),
    ),
    Rule(
        "admin.port",
        ("admin.host", "listen"),
        "`host` and `port` must not be the same socket as a `[[listen]]` entry.",
        _admin_is_not_a_listener,
    ),
)


def check_rules(config: Config, invalid: frozenset[str] | set[str] = frozenset()) -> list[str]:
    """The errors of every rule ``config`` breaks, each starting with its key path.

    Rules reading a key in ``invalid`` (dotted keys, or ``listen``) are skipped.
    """
    errors = []
    for rule in RULES:
        if invalid.intersection(rule.keys):
            continue
        problem = rule.check(config)
        if problem is not None:
            errors.append(f"{rule.key}: {problem}")
    return errors
