"""Where the control socket lives when the config does not say.

The daemon and ``pounce ctl`` compute the same default from the same environment,
so ``pounce ctl status`` finds a daemon started with defaults by the same user.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

SOCKET_NAME = "pounce.sock"


def default_socket_path(environ: Mapping[str, str] | None = None, uid: int | None = None) -> str:
    """The default control socket path, first match wins:

    1. ``$RUNTIME_DIRECTORY/pounce.sock`` when systemd set ``RuntimeDirectory=``
       (the first entry, should it list several);
    2. ``/run/pounce/pounce.sock`` when running as root;
    3. ``$XDG_RUNTIME_DIR/pounce/pounce.sock`` when the session has one;
    4. ``/tmp/pounce-<uid>/pounce.sock`` otherwise.

    ``environ`` and ``uid`` default to the process's own.
    """
    env = os.environ if environ is None else environ
    uid = os.geteuid() if uid is None else uid
    runtime = env.get("RUNTIME_DIRECTORY", "").split(":")[0]
    if runtime:
        return os.path.join(runtime, SOCKET_NAME)
    if uid == 0:
        return os.path.join("/run/pounce", SOCKET_NAME)
    xdg = env.get("XDG_RUNTIME_DIR", "")
    if xdg:
        return os.path.join(xdg, "pounce", SOCKET_NAME)
    return os.path.join("/tmp", f"pounce-{uid}", SOCKET_NAME)


def socket_path_for(config_socket: str | None) -> str:
    """The configured socket path (``[control] socket``), or the default."""
    return config_socket or default_socket_path()
