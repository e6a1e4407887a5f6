"""HTTP API: one router per resource."""

from fastapi import APIRouter

from shop.api import health, items, orders, users

router = APIRouter()
for module in (users, items, orders, health):
    router.include_router(module.router)
