"""Request and response bodies of the HTTP API."""

from decimal import Decimal
from typing import Annotated
from uuid import UUID

from annotated_types import Ge, Le
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PlainSerializer

from shop.columns import (
    DESCRIPTION_LENGTH,
    EMAIL_LENGTH,
    MAX_ID,
    MAX_MONEY,
    MONEY_PLACES,
    NAME_LENGTH,
    storable_text,
)


def check_email(value: str) -> str:
    """Accept ``local@domain.tld`` shapes; full RFC parsing is not worth a dependency."""
    local, at, domain = value.rpartition("@")
    name, dot, tld = domain.rpartition(".")
    if not (at and local and dot and name and tld) or any(c.isspace() for c in value):
        raise ValueError("must be an email address like name@example.com")
    return value


Email = Annotated[
    str,
    Field(min_length=3, max_length=EMAIL_LENGTH),
    AfterValidator(check_email),
    AfterValidator(storable_text),
]
Name = Annotated[str, Field(min_length=1, max_length=NAME_LENGTH), AfterValidator(storable_text)]
Description = Annotated[str, Field(max_length=DESCRIPTION_LENGTH), AfterValidator(storable_text)]
# Plain constraints rather than Field(), so path parameters take them too.
Id = Annotated[int, Ge(1), Le(MAX_ID)]
# Decimal in Python for exact sums, a JSON number on the wire (10.99, not "10.99").
Money = Annotated[
    Decimal,
    Field(ge=0, le=MAX_MONEY, decimal_places=MONEY_PLACES),
    PlainSerializer(float, return_type=float, when_used="json"),
]
# A sum of amounts: as exact, but without the one column's upper bound.
Total = Annotated[
    Decimal,
    Field(ge=0, decimal_places=MONEY_PLACES),
    PlainSerializer(float, return_type=float, when_used="json"),
]


class UserCreate(BaseModel):
    """Body of POST /api/users."""

    email: Email
    name: Name


class UserOut(BaseModel):
    """A user as the API shows it."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    email: str
    name: str


class UserPut(BaseModel):
    """Body of PUT /api/users/by-email/{email}."""

    name: Name


class ItemCreate(BaseModel):
    """Body of POST /items/."""

    name: Name
    description: Description = ""
    price: Money


class ItemUpdate(BaseModel):
    """Body of PUT /items/{id}: fields left out (or null) keep their value."""

    name: Name | None = None
    description: Description | None = None
    price: Money | None = None


class ItemOut(BaseModel):
    """An item as the API shows it."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    description: str
    price: Money


class OrderCreate(BaseModel):
    """Body of POST /api/orders."""

    user_id: Id
    total: Money


class OrderOut(BaseModel):
    """An order as the API shows it."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    reference: UUID
    user_id: int
    total: Money
    status: str


class UserTotal(BaseModel):
    """Sum of one user's orders."""

    user_id: int
    total: Total


class CartLineIn(BaseModel):
    """One line of PUT /api/users/{user_id}/cart."""

    item_id: Id
    quantity: int = Field(ge=1, le=99)


class CartIn(BaseModel):
    """Body of PUT /api/users/{user_id}/cart: the whole cart, replacing the old one."""

    lines: list[CartLineIn] = Field(min_length=1, max_length=50)


class CartLine(CartLineIn):
    """A line of a cart, with the item's price when it was put in."""

    price: Money


class Cart(BaseModel):
    """A user's cart as stored and shown: prices are kept from when it was put."""

    user_id: int
    lines: list[CartLine]
    total: Money


class ServerHealth(BaseModel):
    """Whether one server answered; when it did, what it is and what it can do."""

    status: str
    product: str | None = None
    version: str | None = None
    # The version-dependent code paths this server gets, e.g. "merge_returning", "hexpire".
    features: list[str] = Field(default_factory=list)


class Health(BaseModel):
    """Body of GET /health."""

    postgres: ServerHealth
    redis: ServerHealth
