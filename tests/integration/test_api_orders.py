"""Orders, users' totals and carts through the HTTP API, under both drivers."""

from typing import Any
from uuid import uuid4

import httpx

from shop.api.carts import cart_key
from shop.api.facts import ORDERS_TOTAL, user_facts
from shop.config import Settings

from .factories import OrderCreateFactory
from .support import AnyCache, Json, assert_fresh_uuid7, create_item, create_user, resolve


async def put_cart(client: httpx.AsyncClient, user: Json, *lines: tuple[Json, int]) -> Json:
    """Put a cart of (item, quantity) lines for the user; returns the stored cart."""
    body = {"lines": [{"item_id": item["id"], "quantity": qty} for item, qty in lines]}
    response = await client.put(f"/api/users/{user['id']}/cart", json=body)
    assert response.status_code == 200, response.text
    cart: Json = response.json()
    return cart


async def test_orders_and_total(client: httpx.AsyncClient) -> None:
    user = await create_user(client)
    orders = OrderCreateFactory.batch(3, user_id=user["id"])

    for order in orders:
        response = await client.post("/api/orders", json=order.model_dump(mode="json"))
        assert response.status_code == 201
        assert response.json()["status"] == "pending"
    total = await client.get(f"/api/users/{user['id']}/orders/total")

    assert total.status_code == 200
    expected = float(sum(order.total for order in orders))
    assert total.json() == {"user_id": user["id"], "total": expected}


async def test_total_is_cached_until_the_next_order(
    client: httpx.AsyncClient, cache: AnyCache
) -> None:
    user = await create_user(client)
    path = f"/api/users/{user['id']}/orders/total"
    assert (await client.get(path)).json()["total"] == 0
    await resolve(cache.set_fact(user_facts(user["id"]), ORDERS_TOTAL, "12.34", ttl=60))
    assert (await client.get(path)).json()["total"] == 12.34

    await client.post("/api/orders", json={"user_id": user["id"], "total": 5})

    assert (await client.get(path)).json()["total"] == 5


async def test_order_has_a_fresh_public_reference(client: httpx.AsyncClient) -> None:
    user = await create_user(client)
    order = OrderCreateFactory.build(user_id=user["id"]).model_dump(mode="json")

    placed = (await client.post("/api/orders", json=order)).json()

    assert_fresh_uuid7(placed["reference"])
    found = await client.get(f"/api/orders/{placed['reference']}")
    assert (found.status_code, found.json()) == (200, placed)


async def test_unknown_or_malformed_order_reference(client: httpx.AsyncClient) -> None:
    assert (await client.get(f"/api/orders/{uuid4()}")).status_code == 404
    assert (await client.get("/api/orders/42")).status_code == 422


async def test_user_without_orders_totals_zero(client: httpx.AsyncClient) -> None:
    user = await create_user(client)

    total = await client.get(f"/api/users/{user['id']}/orders/total")

    assert total.json() == {"user_id": user["id"], "total": 0}


async def test_orders_of_unknown_user_are_404(client: httpx.AsyncClient) -> None:
    order = OrderCreateFactory.build(user_id=2_000_000_000).model_dump(mode="json")

    assert (await client.post("/api/orders", json=order)).status_code == 404
    assert (await client.get("/api/users/2000000000/orders/total")).status_code == 404


async def test_cart_is_priced_when_put_and_ordered_once(client: httpx.AsyncClient) -> None:
    user, first, second = (
        await create_user(client),
        await create_item(client),
        await create_item(client),
    )

    cart = await put_cart(client, user, (first, 2), (second, 1))

    lines = [
        {"item_id": first["id"], "quantity": 2, "price": first["price"]},
        {"item_id": second["id"], "quantity": 1, "price": second["price"]},
    ]
    total = round(first["price"] * 2 + second["price"], 2)
    assert cart == {"user_id": user["id"], "lines": lines, "total": total}
    # Later price changes do not reach a cart already put.
    await client.put(f"/items/{first['id']}", json={"price": 0})
    assert (await client.get(f"/api/users/{user['id']}/cart")).json() == cart

    checkout = await client.post(f"/api/users/{user['id']}/cart/checkout")

    assert checkout.status_code == 201
    order = checkout.json()
    assert (order["user_id"], order["total"], order["status"]) == (user["id"], total, "pending")
    assert_fresh_uuid7(order["reference"])
    assert (await client.post(f"/api/users/{user['id']}/cart/checkout")).status_code == 404
    assert (await client.get(f"/api/users/{user['id']}/cart")).status_code == 404
    assert (await client.get(f"/api/users/{user['id']}/orders/total")).json()["total"] == total


async def test_reading_the_cart_restarts_its_ttl(
    client: httpx.AsyncClient, redis_client: Any, settings: Settings
) -> None:
    user = await create_user(client)
    await put_cart(client, user, (await create_item(client), 1))
    await resolve(redis_client.expire(cart_key(user["id"]), 5))

    assert (await client.get(f"/api/users/{user['id']}/cart")).status_code == 200

    ttl = await resolve(redis_client.ttl(cart_key(user["id"])))
    assert settings.cart_ttl - 5 <= ttl <= settings.cart_ttl


async def test_cart_of_unknown_user_or_item_is_404(client: httpx.AsyncClient) -> None:
    user, item = await create_user(client), await create_item(client)
    line = {"lines": [{"item_id": item["id"], "quantity": 1}]}
    ghost = {"lines": [{"item_id": 2_000_000_000, "quantity": 1}]}

    assert (await client.put("/api/users/2000000000/cart", json=line)).status_code == 404
    assert (await client.put(f"/api/users/{user['id']}/cart", json=ghost)).status_code == 404
    assert (await client.get(f"/api/users/{user['id']}/cart")).status_code == 404


async def test_cart_beyond_what_an_order_holds_is_422(client: httpx.AsyncClient) -> None:
    user = await create_user(client)
    item = (await client.post("/items/", json={"name": "yacht", "price": 99_999_999.99})).json()
    body = {"lines": [{"item_id": item["id"], "quantity": 2}]}

    response = await client.put(f"/api/users/{user['id']}/cart", json=body)

    assert response.status_code == 422
    assert "more than an order can hold" in response.json()["detail"]


async def test_cart_needs_redis(gated_client: httpx.AsyncClient) -> None:
    user, item = await create_user(gated_client), await create_item(gated_client)
    body = {"lines": [{"item_id": item["id"], "quantity": 1}]}

    response = await gated_client.put(f"/api/users/{user['id']}/cart", json=body)

    assert response.status_code == 503
    assert (await gated_client.get(f"/api/users/{user['id']}/cart")).status_code == 404
    checkout = await gated_client.post(f"/api/users/{user['id']}/cart/checkout")
    assert checkout.status_code == 404
