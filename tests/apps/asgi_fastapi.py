"""A small FastAPI app: a JSON body and a path parameter."""

from __future__ import annotations

from fastapi import FastAPI
from pydantic import BaseModel

app = FastAPI()


class Item(BaseModel):
    name: str
    price: float
    tags: list[str] = []


@app.post("/items/{item_id}")
async def create_item(item_id: int, item: Item) -> dict[str, object]:
    return {
        "item_id": item_id,
        "name": item.name,
        "double_price": item.price * 2,
        "tags": item.tags,
    }


@app.get("/items/{item_id}")
async def read_item(item_id: int, q: str | None = None) -> dict[str, object]:
    return {"item_id": item_id, "q": q}
