"""An app module whose import reads a setting that is not there (``KeyError``).

The error must show this module's frames (``read_setting`` called at import), not
Pounce's import machinery.
"""

import os


def read_setting(name: str) -> str:
    return os.environ[name]


DATABASE_URL = read_setting("POUNCE_TESTS_NO_SUCH_DATABASE_URL_Q7")


async def app(scope, receive, send):  # type: ignore[no-untyped-def]
    raise AssertionError("unreachable")
