"""The HTTP API through httpx, on the test's session and Redis, under both drivers."""

import json
from typing import Any

import httpx
import pytest
from sqlalchemy import make_url

from shop.api.deps import get_cache
from shop.api.facts import PROFILE, user_facts
from shop.api.items import ITEMS_CACHE_KEY
from shop.config import Settings
from shop.main import create_app
from shop.repositories import AsyncUserRepository, UserRepository

from .factories import ItemCreateFactory, OrderCreateFactory, UserCreateFactory, unique_email
from .support import AnyCache, Gate, Json, create_item, create_user, http_client, resolve, serve

DOWN: Json = {"status": "down", "product": None, "version": None, "features": []}


async def cached_list(redis_client: Any) -> Any:
    """The item list as stored in Redis, or None."""
    raw = await resolve(redis_client.get(ITEMS_CACHE_KEY))
    return None if raw is None else json.loads(raw)


async def test_create_and_read_user(client: httpx.AsyncClient) -> None:
    data = UserCreateFactory.build()

    created = await client.post("/api/users", json=data.model_dump())

    assert created.status_code == 201
    body = created.json()
    assert body == {"id": body["id"], "email": data.email, "name": data.name}
    read = await client.get(f"/api/users/{body['id']}")
    assert (read.status_code, read.json()) == (200, body)


async def test_put_by_email_creates_then_renames(client: httpx.AsyncClient) -> None:
    email = unique_email()

    created = await client.put(f"/api/users/by-email/{email}", json={"name": "First"})
    renamed = await client.put(f"/api/users/by-email/{email}", json={"name": "Second"})

    assert created.status_code == 201
    user = created.json()
    assert user == {"id": user["id"], "email": email, "name": "First"}
    assert (renamed.status_code, renamed.json()) == (200, {**user, "name": "Second"})
    assert (await client.get(f"/api/users/{user['id']}")).json() == {**user, "name": "Second"}


@pytest.mark.parametrize(
    ("email", "body"),
    [("not-an-email", {"name": "Ann"}), ("ann@example.com", {"name": ""})],
    ids=["bad-email", "empty-name"],
)
async def test_invalid_put_by_email_is_422(
    client: httpx.AsyncClient, email: str, body: Json
) -> None:
    assert (await client.put(f"/api/users/by-email/{email}", json=body)).status_code == 422


async def test_profile_is_cached_until_the_user_is_renamed(
    client: httpx.AsyncClient, cache: AnyCache
) -> None:
    user = await create_user(client)
    assert (await client.get(f"/api/users/{user['id']}")).json() == user
    # Served from Redis now: what the cache holds is what comes back.
    marker = {**user, "name": "from-cache"}
    await resolve(cache.set_fact(user_facts(user["id"]), PROFILE, marker, ttl=60))
    assert (await client.get(f"/api/users/{user['id']}")).json() == marker

    await client.put(f"/api/users/by-email/{user['email']}", json={"name": "Renamed"})

    assert (await client.get(f"/api/users/{user['id']}")).json() == {**user, "name": "Renamed"}


async def test_duplicate_email_is_400(client: httpx.AsyncClient) -> None:
    user = await create_user(client)

    response = await client.post("/api/users", json={"email": user["email"], "name": "Other"})

    assert response.status_code == 400
    assert isinstance(response.json()["detail"], str)
    assert "email" in response.json()["detail"]


@pytest.mark.parametrize(
    "payload",
    [
        {"email": "not-an-email", "name": "Ann"},
        {"email": "ann@example", "name": "Ann"},
        {"email": "ann@example.com", "name": ""},
        {"email": "ann@example.com"},
    ],
    ids=["no-at", "no-dot", "empty-name", "missing-name"],
)
async def test_invalid_user_is_422(client: httpx.AsyncClient, payload: Json) -> None:
    assert (await client.post("/api/users", json=payload)).status_code == 422


async def test_unknown_user_is_404(client: httpx.AsyncClient) -> None:
    assert (await client.get("/api/users/2000000000")).status_code == 404


async def test_item_crud(client: httpx.AsyncClient) -> None:
    data = ItemCreateFactory.build()
    created = await client.post("/items/", json=data.model_dump(mode="json"))
    assert created.status_code == 200
    item = created.json()
    assert item == {**data.model_dump(mode="json"), "id": item["id"]}
    assert isinstance(item["price"], float)

    updated = await client.put(f"/items/{item['id']}", json={"price": 3.5})
    assert (updated.status_code, updated.json()) == (200, {**item, "price": 3.5})
    assert (await client.get("/items/")).json() == [{**item, "price": 3.5}]

    deleted = await client.delete(f"/items/{item['id']}")
    assert (deleted.status_code, deleted.json()) == (200, {"message": "Item deleted successfully"})
    assert (await client.get("/items/")).json() == []


@pytest.mark.parametrize("method", ["PUT", "DELETE"])
async def test_unknown_item_is_404(client: httpx.AsyncClient, method: str) -> None:
    response = await client.request(method, "/items/2000000000", json={"name": "ghost"})

    assert response.status_code == 404


async def test_negative_price_is_422(client: httpx.AsyncClient) -> None:
    payload = {**ItemCreateFactory.build().model_dump(mode="json"), "price": -1}

    assert (await client.post("/items/", json=payload)).status_code == 422


async def test_item_list_is_cached(client: httpx.AsyncClient, redis_client: Any) -> None:
    item = await create_item(client)
    assert await cached_list(redis_client) is None

    listed = (await client.get("/items/")).json()

    assert listed == [item]
    assert await cached_list(redis_client) == listed
    # Served from Redis now: what the cache holds is what comes back.
    marker = [{**item, "name": "from-cache"}]
    await resolve(redis_client.set(ITEMS_CACHE_KEY, json.dumps(marker)))
    assert (await client.get("/items/")).json() == marker


@pytest.mark.parametrize("write", ["create", "update", "delete"])
async def test_item_writes_invalidate_list(
    client: httpx.AsyncClient, redis_client: Any, write: str
) -> None:
    item = await create_item(client)
    await client.get("/items/")
    assert await cached_list(redis_client) is not None

    if write == "create":
        expected = [item, await create_item(client)]
    elif write == "update":
        response = await client.put(f"/items/{item['id']}", json={"name": "renamed"})
        expected = [response.json()]
    else:
        await client.delete(f"/items/{item['id']}")
        expected = []

    assert await cached_list(redis_client) is None
    assert (await client.get("/items/")).json() == expected


async def test_health_reports_both_servers(client: httpx.AsyncClient) -> None:
    response = await client.get("/health")

    assert response.status_code == 200
    body = response.json()
    assert body["postgres"]["status"] == body["redis"]["status"] == "ok"
    assert body["postgres"]["version"][:2].isdigit()
    assert body["redis"]["version"][0].isdigit()


async def test_health_is_503_while_postgres_is_down(
    settings: Settings, cache: AnyCache, closed_port: int
) -> None:
    dead = make_url(settings.database_url).set(host="127.0.0.1", port=closed_port)
    database_url = dead.render_as_string(hide_password=False)
    app = create_app(settings.model_copy(update={"database_url": database_url}))
    app.dependency_overrides[get_cache] = lambda: cache

    async with app.router.lifespan_context(app), http_client(app) as client:
        response = await client.get("/health")

    assert response.status_code == 503
    assert response.json()["postgres"] == DOWN
    assert response.json()["redis"]["status"] == "ok"


async def test_api_works_without_redis_and_serves_no_stale_list_after(
    gated_client: httpx.AsyncClient, redis_gate: Gate, redis_client: Any
) -> None:
    # A list cached before Redis became unreachable from the app.
    await resolve(redis_client.set(ITEMS_CACHE_KEY, json.dumps([])))

    health = await gated_client.get("/health")
    assert health.json()["redis"] == DOWN
    user = await create_user(gated_client)
    assert (await gated_client.get(f"/api/users/{user['id']}")).status_code == 200
    order = OrderCreateFactory.build(user_id=user["id"]).model_dump(mode="json")
    assert (await gated_client.post("/api/orders", json=order)).status_code == 201
    total = await gated_client.get(f"/api/users/{user['id']}/orders/total")
    assert total.json()["total"] == order["total"]
    item = await create_item(gated_client)
    item = (await gated_client.put(f"/items/{item['id']}", json={"name": "renamed"})).json()
    assert (await gated_client.get("/items/")).json() == [item]

    redis_gate.open()

    assert (await gated_client.get("/items/")).json() == [item]
    assert await cached_list(redis_client) == [item]
    assert (await gated_client.get("/health")).json()["redis"]["status"] == "ok"


@pytest.mark.committed
async def test_real_server_commits_and_caches(
    settings: Settings, users: UserRepository | AsyncUserRepository, redis_client: Any
) -> None:
    async with (
        serve(create_app(settings)) as base_url,
        httpx.AsyncClient(base_url=base_url) as http,
    ):
        user = await create_user(http)
        item = await create_item(http)
        assert (await http.get("/items/")).json() == [item]
        assert (await http.get("/health")).json()["redis"]["status"] == "ok"

    assert await cached_list(redis_client) == [item]
    # Committed by the server, so visible from the test's own connection.
    stored = await resolve(users.get(user["id"]))
    assert stored is not None
    assert stored.email == user["email"]
