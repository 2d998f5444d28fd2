"""An app module whose import fails: a boot failure of every worker."""

raise RuntimeError("daemon-broken-import-7731")
