"""Pounce: a pure-Python ASGI server run by a supervisor daemon."""

__version__ = "0.1.0"

__all__ = ["__version__"]
