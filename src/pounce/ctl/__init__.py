"""``pounce ctl``: the operator's command for a running daemon.

The lead wires it into the ``pounce`` parser with :func:`add_ctl_parser` and runs
it with :func:`run_ctl`, which returns the exit code (0 done, 1 failed, 2 bad
command line or unreadable config file, 3 daemon not running).  Importing this
package loads neither asyncio nor rich.
"""

from pounce.ctl.command import add_ctl_parser, run_ctl

__all__ = ["add_ctl_parser", "run_ctl"]
