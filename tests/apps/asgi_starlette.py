"""A small Starlette app, with lifespan state."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
    yield {"greeting": "hello-from-lifespan"}


async def hello(request: Request) -> PlainTextResponse:
    return PlainTextResponse(f"hello, {request.path_params['name']}")


async def echo(request: Request) -> JSONResponse:
    data = await request.json()
    return JSONResponse(
        {
            "received": data,
            "query": dict(request.query_params),
            "greeting": request.state.greeting,
        }
    )


app = Starlette(
    routes=[Route("/hello/{name}", hello), Route("/echo", echo, methods=["POST"])],
    lifespan=lifespan,
)
