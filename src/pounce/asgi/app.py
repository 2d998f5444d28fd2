"""Import the user's ASGI application from a ``module:attr`` or ``module:factory()`` string."""

from __future__ import annotations

import importlib
import inspect
import os
import sys
import traceback
from collections.abc import Sequence
from typing import Any, cast

from pounce.config import Config
from pounce.errors import AppImportError, UsageError
from pounce.types import ASGIApp


def import_app(spec: str, *, factory: bool = False, app_dir: str | None = ".") -> ASGIApp:
    """Import ``spec`` and return an ASGI 3 callable.

    ``spec`` is ``"package.module:attr.path"``; a trailing ``()`` (or ``factory=True``)
    calls the attribute with no arguments and uses the result.  Every failure raises
    :class:`AppImportError` with one line saying what is wrong.
    """
    _add_to_path(app_dir)
    module_name, sep, attr = spec.partition(":")
    call = factory
    if attr.endswith("()"):
        attr, call = attr[:-2], True
    if not sep or not module_name or not attr:
        raise AppImportError(f'app "{spec}" must be in the form "module:attribute"')
    obj = _resolve(module_name, attr)
    if call:
        if not callable(obj):
            raise AppImportError(f'app factory "{spec}" is not callable')
        try:
            obj = obj()
        except Exception as exc:
            raise AppImportError(
                f'app factory "{spec}" raised {type(exc).__name__}: {exc}',
                app_traceback=app_traceback(exc),
            ) from exc
    check_asgi3(obj, spec)
    return cast(ASGIApp, obj)


def _add_to_path(app_dir: str | None) -> None:
    if app_dir is not None:
        path = os.path.abspath(app_dir)
        if path not in sys.path:
            sys.path.insert(0, path)


def _resolve(module_name: str, attr: str, where: str = "") -> Any:
    """Import ``module_name`` and follow the dotted ``attr`` in it; ``where`` prefixes errors."""
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise AppImportError(f'{where}could not import module "{module_name}"') from None
        raise AppImportError(
            f'{where}importing "{module_name}" failed: {type(exc).__name__}: {exc}',
            app_traceback=app_traceback(exc),
        ) from exc
    except Exception as exc:
        raise AppImportError(
            f'{where}importing "{module_name}" failed: {type(exc).__name__}: {exc}',
            app_traceback=app_traceback(exc),
        ) from exc
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise AppImportError(
                f'{where}attribute "{attr}" not found in module "{module_name}"'
            ) from None
    return obj


def wrap_middleware(
    app: ASGIApp, middleware: Sequence[str], *, app_dir: str | None = "."
) -> ASGIApp:
    """``app`` wrapped in the ``server.middleware`` classes, the first outermost.

    Each entry is ``"module:Class"``, called as ``Class(app)``: ``["a:A", "b:B"]``
    gives ``A(B(app))``.  A failure raises :class:`AppImportError` naming the key
    path (``server.middleware[1]: ...``), with the app's traceback when its code raised.
    """
    if middleware:
        _add_to_path(app_dir)
    for index in reversed(range(len(middleware))):
        spec = middleware[index]
        where = f"server.middleware[{index}]: "
        module_name, sep, attr = spec.partition(":")
        if not sep or not module_name or not attr:
            raise AppImportError(f'{where}"{spec}" must be in the form "module:Class"')
        cls = _resolve(module_name, attr, where)
        if not callable(cls):
            raise AppImportError(f'{where}"{spec}" is not callable (got {type(cls).__name__})')
        try:
            wrapped = cls(app)
        except Exception as exc:
            raise AppImportError(
                f'{where}"{spec}"(app) raised {type(exc).__name__}: {exc}',
                app_traceback=app_traceback(exc),
            ) from exc
        try:
            check_asgi3(wrapped, f"{spec}(app)")
        except AppImportError as exc:
            raise AppImportError(f"{where}{exc}") from None
        app = cast(ASGIApp, wrapped)
    return app


def load_app(config: Config) -> ASGIApp:
    """The app ``config`` names (``app``, ``server.factory``) inside its ``server.middleware``.

    What the workers serve, and what ``pounce check`` imports.
    """
    if not config.app:
        raise UsageError("no app given: pass MODULE:APP or set app in the config file")
    app = import_app(config.app, factory=config.server.factory)
    return wrap_middleware(app, config.server.middleware)


_MACHINERY = (
    "<frozen importlib",
    os.path.dirname(os.path.abspath(importlib.__file__)) + os.sep,
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep,  # pounce
)


def _is_machinery(filename: str) -> bool:
    return filename.startswith(_MACHINERY)


def app_traceback(exc: BaseException) -> str:
    """``exc``'s traceback (and its causes') without the frames of importlib and Pounce.

    What is left are the app's own frames: where its import or factory raised.
    """
    shown = traceback.TracebackException.from_exception(exc)
    seen: set[int] = set()
    todo: list[traceback.TracebackException | None] = [shown]
    while todo:
        current = todo.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        frames = [f for f in current.stack if not _is_machinery(f.filename)]
        current.stack = traceback.StackSummary.from_list(frames)
        todo += [current.__cause__, current.__context__]
    return "".join(shown.format()).rstrip("\n")


def check_asgi3(obj: object, spec: str) -> None:
    """Raise :class:`AppImportError` unless ``obj`` looks like an ASGI 3 callable."""
    if not callable(obj):
        raise AppImportError(f'"{spec}" is not callable (got {type(obj).__name__})')
    if inspect.isclass(obj):
        raise AppImportError(
            f'"{spec}" is a class: ASGI 2 style apps are not supported, pass an ASGI 3 callable'
        )
    target: Any = obj
    if not (inspect.isfunction(obj) or inspect.ismethod(obj)):
        call = getattr(obj, "__call__", None)  # noqa: B004
        if call is not None and (inspect.ismethod(call) or inspect.isfunction(call)):
            target = call
    try:
        signature = inspect.signature(target)
    except (TypeError, ValueError):
        return
    params = [
        p
        for p in signature.parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
    ]
    variadic = any(p.kind is p.VAR_POSITIONAL for p in signature.parameters.values())
    if len(params) != 3 and not variadic:
        if len(params) == 1:
            raise AppImportError(
                f'"{spec}" takes one argument: ASGI 2 style apps are not supported, '
                "an ASGI 3 app takes (scope, receive, send)"
            )
        raise AppImportError(
            f'"{spec}" is not an ASGI 3 app: it must take (scope, receive, send), '
            f"not {len(params)} arguments"
        )
    if not variadic and not _is_async(obj, target):
        raise AppImportError(f'"{spec}" is not an ASGI 3 app: it is not an async callable')


def _is_async(obj: object, target: object) -> bool:
    if inspect.iscoroutinefunction(obj) or inspect.iscoroutinefunction(target):
        return True
    # Wrapped/decorated callables (functools.partial, middleware objects) may return
    # an awaitable without being coroutine functions: give them the benefit of the doubt.
    return not (inspect.isfunction(target) or inspect.ismethod(target))
