"""An app module whose own import fails: the error must name the missing dependency."""

import definitely_missing_dep_77  # type: ignore[import-not-found]  # noqa: F401


async def app(scope, receive, send):  # type: ignore[no-untyped-def]
    raise AssertionError("unreachable")
