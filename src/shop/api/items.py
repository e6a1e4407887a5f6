"""Routes under /items/, with the item list cached in Redis."""

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, status
from pydantic import TypeAdapter

from shop.api.deps import Cache, DbSession, Items
from shop.api.driver import call
from shop.schemas import Id, ItemCreate, ItemOut, ItemUpdate

ITEMS_CACHE_KEY = "all_items_cache"
ItemList = TypeAdapter(list[ItemOut])

router = APIRouter(prefix="/items", tags=["items"])


def cache_ttl(request: Request) -> int:
    """Seconds the item list may live in Redis."""
    ttl: int = request.app.state.settings.items_cache_ttl
    return ttl


async def commit_and_forget_list(session: DbSession, cache: Cache) -> None:
    """Commit, then drop the cached list; in that order, so no reader refills it with old rows."""
    await call(session.commit)
    await call(cache.delete, ITEMS_CACHE_KEY)


def not_found(item_id: int) -> HTTPException:
    """The 404 for an unknown item."""
    return HTTPException(status.HTTP_404_NOT_FOUND, f"No item with id {item_id}.")


@router.get("/")
async def list_items(
    items: Items, cache: Cache, ttl: Annotated[int, Depends(cache_ttl)]
) -> list[ItemOut]:
    """List every item, from the cache when it holds the list."""
    cached = await call(cache.get, ITEMS_CACHE_KEY)
    if cached is not None:
        return ItemList.validate_python(cached)
    listed = ItemList.validate_python(await call(items.list), from_attributes=True)
    await call(cache.set, ITEMS_CACHE_KEY, ItemList.dump_python(listed, mode="json"), ttl=ttl)
    return listed


@router.post("/")
async def create_item(data: ItemCreate, items: Items, session: DbSession, cache: Cache) -> ItemOut:
    """Add an item."""
    item = await call(items.create, name=data.name, description=data.description, price=data.price)
    created = ItemOut.model_validate(item)
    await commit_and_forget_list(session, cache)
    return created


@router.put("/{item_id}")
async def update_item(
    item_id: Id, data: ItemUpdate, items: Items, session: DbSession, cache: Cache
) -> ItemOut:
    """Change the fields sent; 404 for an unknown item."""
    item = await call(
        items.update, item_id, name=data.name, description=data.description, price=data.price
    )
    if item is None:
        raise not_found(item_id)
    updated = ItemOut.model_validate(item)
    await commit_and_forget_list(session, cache)
    return updated


@router.delete("/{item_id}")
async def delete_item(
    item_id: Id, items: Items, session: DbSession, cache: Cache
) -> dict[str, str]:
    """Remove an item; 404 for an unknown item."""
    if not await call(items.delete, item_id):
        raise not_found(item_id)
    await commit_and_forget_list(session, cache)
    return {"message": "Item deleted successfully"}
