"""HTTP API: one router per resource."""

from fastapi import APIRouter

from shop.api import carts, health, items, orders, users

router = APIRouter()
for module in (users, items, orders, carts, health):
    router.include_router(module.router)
