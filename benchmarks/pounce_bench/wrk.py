"""wrk: its command line, its Lua scripts, and parsing what it prints.

The parsing is pure (text in, a :class:`WrkResult` out) and reads the units wrk
prints: times as ``us``/``ms``/``s``/``m``/``h``, counts with ``k``/``M``/``G``
suffixes and sizes as ``B``/``KB``/``MB``/``GB`` (powers of 1024).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from pounce.errors import PounceError

_TIME_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}
_METRIC = {"": 1.0, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}
_BINARY = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3, "TB": 1024**4}
_NUMBER = r"([0-9]+(?:\.[0-9]+)?)"


class WrkOutputError(PounceError):
    """wrk printed something this parser cannot read."""


@dataclass(frozen=True, slots=True)
class WrkResult:
    """One wrk run.  Latencies in milliseconds, transfer in bytes per second."""

    requests: int
    duration_s: float
    requests_per_s: float
    transfer_per_s: float
    latency_avg_ms: float
    latency_max_ms: float
    percentiles_ms: dict[int, float]
    connect_errors: int = 0
    read_errors: int = 0
    write_errors: int = 0
    timeouts: int = 0
    non_2xx: int = 0

    @property
    def errors(self) -> int:
        """Socket errors of every kind plus non-2xx/3xx responses."""
        return (
            self.connect_errors
            + self.read_errors
            + self.write_errors
            + self.timeouts
            + self.non_2xx
        )

    @property
    def p50_ms(self) -> float:
        return self.percentiles_ms[50]

    @property
    def p99_ms(self) -> float:
        return self.percentiles_ms[99]


def parse_time_ms(text: str) -> float:
    """``"812.00us"`` -> 0.812; ``"1.50s"`` -> 1500.0 (milliseconds)."""
    match = re.fullmatch(_NUMBER + r"(us|ms|s|m|h)", text.strip())
    if match is None:
        raise WrkOutputError(f"not a wrk time: {text!r}")
    return float(match[1]) * _TIME_MS[match[2]]


def parse_metric(text: str) -> float:
    """``"12.34k"`` -> 12340.0; ``"1.2M"`` -> 1200000.0; ``"987"`` -> 987.0."""
    match = re.fullmatch(_NUMBER + r"([kMGT]?)", text.strip())
    if match is None:
        raise WrkOutputError(f"not a wrk count: {text!r}")
    return float(match[1]) * _METRIC[match[2]]


def parse_bytes(text: str) -> float:
    """``"1.50MB"`` -> 1572864.0 (wrk's sizes are powers of 1024)."""
    match = re.fullmatch(_NUMBER + r"(B|KB|MB|GB|TB)", text.strip())
    if match is None:
        raise WrkOutputError(f"not a wrk size: {text!r}")
    return float(match[1]) * _BINARY[match[2]]


def _find(pattern: str, text: str, what: str) -> re.Match[str]:
    match = re.search(pattern, text, re.MULTILINE)
    if match is None:
        raise WrkOutputError(f"no {what} in wrk output", hint=_tail(text))
    return match


def _tail(text: str) -> str:
    lines = text.strip().splitlines()
    return " | ".join(lines[-3:]) if lines else "wrk printed nothing"


def parse_wrk_output(text: str) -> WrkResult:
    """Read the output of ``wrk --latency`` into a :class:`WrkResult`."""
    latency = _find(r"^\s*Latency\s+(\S+)\s+(\S+)\s+(\S+)", text, "latency line")
    totals = _find(r"^\s*(\d+) requests in (\S+), (\S+) read", text, "totals line")
    rps = _find(r"^Requests/sec:\s*(\S+)", text, "Requests/sec line")
    transfer = _find(r"^Transfer/sec:\s*(\S+)", text, "Transfer/sec line")
    percentiles = {
        int(m[1]): parse_time_ms(m[2])
        for m in re.finditer(r"^\s*(\d+)(?:\.0+)?%\s+(\S+)\s*$", text, re.MULTILINE)
    }
    if 50 not in percentiles or 99 not in percentiles:
        raise WrkOutputError("no latency distribution in wrk output (run it with --latency)")
    errors = {"connect": 0, "read": 0, "write": 0, "timeout": 0}
    socket_errors = re.search(r"Socket errors:(.*)$", text, re.MULTILINE)
    if socket_errors is not None:
        for name, count in re.findall(r"(\w+) (\d+)", socket_errors[1]):
            errors[name] = int(count)
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", text)
    return WrkResult(
        requests=int(totals[1]),
        duration_s=parse_time_ms(totals[2]) / 1000.0,
        requests_per_s=parse_metric(rps[1]),
        transfer_per_s=parse_bytes(transfer[1]),
        latency_avg_ms=parse_time_ms(latency[1]),
        latency_max_ms=parse_time_ms(latency[3]),
        percentiles_ms=percentiles,
        connect_errors=errors["connect"],
        read_errors=errors["read"],
        write_errors=errors["write"],
        timeouts=errors["timeout"],
        non_2xx=int(non_2xx[1]) if non_2xx else 0,
    )


def post_script(body_size: int) -> str:
    """A wrk Lua script that POSTs ``body_size`` bytes on every request."""
    return (
        'wrk.method = "POST"\n'
        f'wrk.body = string.rep("x", {body_size})\n'
        'wrk.headers["Content-Type"] = "application/octet-stream"\n'
    )


def wrk_command(
    wrk: str,
    url: str,
    *,
    duration_s: int,
    connections: int,
    threads: int = 1,
    script: str | None = None,
    timeout_s: int = 10,
) -> list[str]:
    """The wrk command line for one run (always with ``--latency``)."""
    command = [wrk, f"-t{threads}", f"-c{connections}", f"-d{duration_s}s"]
    command += ["--latency", f"--timeout={timeout_s}s"]
    if script is not None:
        command += ["-s", script]
    return [*command, url]


def wrk_version(output: str) -> str:
    """``"wrk debian/4.1.0-3+b2 [epoll] Copyright..."`` -> ``"debian/4.1.0-3+b2"``."""
    first: Sequence[str] = output.strip().split()
    return first[1] if len(first) > 1 and first[0] == "wrk" else "unknown"
