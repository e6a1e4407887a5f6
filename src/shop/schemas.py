"""Request and response bodies of the HTTP API."""

from decimal import Decimal
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PlainSerializer


def check_email(value: str) -> str:
    """Accept ``local@domain.tld`` shapes; full RFC parsing is not worth a dependency."""
    local, at, domain = value.rpartition("@")
    name, dot, tld = domain.rpartition(".")
    if not (at and local and dot and name and tld) or any(c.isspace() for c in value):
        raise ValueError("must be an email address like name@example.com")
    return value


Email = Annotated[str, Field(min_length=3, max_length=254), AfterValidator(check_email)]
Name = Annotated[str, Field(min_length=1, max_length=100)]
# Decimal in Python for exact sums, a JSON number on the wire (10.99, not "10.99").
Money = Annotated[
    Decimal,
    Field(ge=0, max_digits=10, decimal_places=2),
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


class ItemCreate(BaseModel):
    """Body of POST /items/."""

    name: Name
    description: str = ""
    price: Money


class ItemUpdate(BaseModel):
    """Body of PUT /items/{id}: fields left out (or null) keep their value."""

    name: Name | None = None
    description: str | None = None
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

    user_id: int
    total: Money


class OrderOut(BaseModel):
    """An order as the API shows it."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    user_id: int
    total: Money
    status: str


class UserTotal(BaseModel):
    """Sum of one user's orders."""

    user_id: int
    total: Money


class ServerHealth(BaseModel):
    """Whether one server answered, and its version when it did."""

    status: str
    version: str | None


class Health(BaseModel):
    """Body of GET /health."""

    postgres: ServerHealth
    redis: ServerHealth
