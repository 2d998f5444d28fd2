"""The benchmark app, for serving it by hand with any server.

The code lives in ``benchmarks/pounce_bench/app.py`` (raw ASGI, standard library only,
no import of pounce) with the rest of ``pounce bench``; the benchmark copies that file
into its work directory so that every server, whatever its venv, runs the same code.
From the repository root:

    PYTHONPATH=benchmarks .venv/bin/python -m pounce serve benchmarks.apps:app --port 8000
    PYTHONPATH=src:benchmarks ~/.cache/pounce-bench/peers-venv/bin/uvicorn benchmarks.apps:app

Routes: GET /hello, GET /json, POST /echo, GET /stream, GET /download.
"""

from pounce_bench.app import app

__all__ = ["app"]
