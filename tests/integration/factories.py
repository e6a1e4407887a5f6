"""Payloads for the tests, built from the API's own request schemas."""

from decimal import Decimal
from uuid import uuid4

from polyfactory import Use
from polyfactory.factories.pydantic_factory import ModelFactory

from shop.schemas import ItemCreate, OrderCreate, UserCreate

faker = ModelFactory.__faker__


def unique_email() -> str:
    """An email no other test in the run uses, so tests never collide on the unique index."""
    return f"{faker.user_name()}.{uuid4().hex[:12]}@example.com"


def price() -> Decimal:
    """A shop-like price with cents."""
    return Decimal(faker.pydecimal(left_digits=4, right_digits=2, positive=True))


class UserCreateFactory(ModelFactory[UserCreate]):
    """A valid user registration."""

    email = Use(unique_email)
    name = Use(faker.name)


class ItemCreateFactory(ModelFactory[ItemCreate]):
    """A valid new item."""

    name = Use(faker.word)
    description = Use(faker.sentence)
    price = Use(price)


class OrderCreateFactory(ModelFactory[OrderCreate]):
    """An order; pass ``user_id`` of an existing user."""

    total = Use(price)
