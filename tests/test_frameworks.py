"""Real frameworks served by pounce: Starlette, FastAPI and Django's ASGI handler."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from helpers.asgi import Launcher, launcher
from helpers.server import Server

pytestmark = [pytest.mark.slow, pytest.mark.timeout(60)]


@pytest.fixture(scope="module")
def launch() -> Iterator[Launcher]:
    with launcher() as launched:
        yield launched


@pytest.fixture(scope="module")
def starlette_server(launch: Launcher) -> Server:
    return launch.fd("apps.asgi_starlette:app")


@pytest.fixture(scope="module")
def fastapi_server(launch: Launcher) -> Server:
    return launch.fd("apps.asgi_fastapi:app")


@pytest.fixture(scope="module")
def django_server(launch: Launcher) -> Server:
    return launch.fd("apps.asgi_django:app")


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as c:
        yield c


def test_starlette_path_param(starlette_server: Server, client: httpx.Client) -> None:
    r = client.get(starlette_server.url + "/hello/world")
    assert r.status_code == 200
    assert r.text == "hello, world"
    assert r.headers["content-type"].startswith("text/plain")


def test_starlette_json_body_and_lifespan_state(
    starlette_server: Server, client: httpx.Client
) -> None:
    r = client.post(starlette_server.url + "/echo?k=v", json={"a": [1, 2], "b": "c"})
    assert r.status_code == 200
    assert r.json() == {
        "received": {"a": [1, 2], "b": "c"},
        "query": {"k": "v"},
        "greeting": "hello-from-lifespan",
    }


def test_starlette_not_found(starlette_server: Server, client: httpx.Client) -> None:
    assert client.get(starlette_server.url + "/nope").status_code == 404


def test_fastapi_json_body_and_path_param(fastapi_server: Server, client: httpx.Client) -> None:
    r = client.post(
        fastapi_server.url + "/items/42", json={"name": "widget", "price": 2.5, "tags": ["x"]}
    )
    assert r.status_code == 200, r.text
    assert r.json() == {"item_id": 42, "name": "widget", "double_price": 5.0, "tags": ["x"]}


def test_fastapi_get_with_query(fastapi_server: Server, client: httpx.Client) -> None:
    r = client.get(fastapi_server.url + "/items/7", params={"q": "café"})
    assert r.status_code == 200
    assert r.json() == {"item_id": 7, "q": "café"}


def test_fastapi_validation_errors(fastapi_server: Server, client: httpx.Client) -> None:
    bad_param = client.post(fastapi_server.url + "/items/abc", json={"name": "w", "price": 1})
    assert bad_param.status_code == 422
    bad_body = client.post(fastapi_server.url + "/items/1", json={"name": "w"})
    assert bad_body.status_code == 422


def test_fastapi_openapi(fastapi_server: Server, client: httpx.Client) -> None:
    r = client.get(fastapi_server.url + "/openapi.json")
    assert r.status_code == 200
    assert "/items/{item_id}" in r.json()["paths"]


def test_django_view(django_server: Server, client: httpx.Client) -> None:
    r = client.get(django_server.url + "/hello/bob/", params={"q": "1"})
    assert r.status_code == 200, r.text
    assert r.json() == {"hello": "bob", "method": "GET", "q": "1", "path": "/hello/bob/"}


def test_django_not_found(django_server: Server, client: httpx.Client) -> None:
    assert client.get(django_server.url + "/missing/").status_code == 404
