"""The deployment tests' app (``apps.deploy_app``) behind an import that takes as long as
the test wants, like a large app still importing: the import waits until the file named
by ``$DEPLOY_IMPORT_GATE`` exists, at most 60 seconds.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from apps.deploy_app import app

_gate = Path(os.environ["DEPLOY_IMPORT_GATE"])
_deadline = time.monotonic() + 60
while not _gate.exists() and time.monotonic() < _deadline:
    time.sleep(0.02)

__all__ = ["app"]
