"""Data access: thin sync and async executors over the statements in ``shop.queries``.

Repositories flush, never commit: the caller owns the transaction. Arguments
the columns cannot hold raise ``shop.columns.InvalidValueError`` before any
statement is sent (see ``shop.queries``).
"""

from collections.abc import Sequence
from decimal import Decimal
from uuid import UUID

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from shop import queries
from shop.models import Item, Order, User
from shop.pg_capabilities import async_pg_server, pg_server


class DuplicateEmailError(Exception):
    """A user with this email, compared ignoring case, already exists."""

    def __init__(self, email: str) -> None:
        super().__init__(
            f"A user with email {email!r} (ignoring case) already exists; use another email."
        )
        self.email = email


class UserRepository:
    """Users through a sync ``Session``."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def create(self, *, email: str, name: str) -> User:
        """Insert a user; raise ``DuplicateEmailError`` when the email is taken."""
        # The savepoint confines a failed insert, so the session stays usable.
        try:
            with self.session.begin_nested():
                return self.session.scalars(queries.insert_user(email, name)).one()
        except IntegrityError as exc:
            raise DuplicateEmailError(email) from exc

    def upsert(self, *, email: str, name: str) -> tuple[User, bool]:
        """Create the user, or rename the one with this email; True when it was created."""
        statement = pg_server(self.session).upsert_user(email, name)
        try:
            with self.session.begin_nested():
                user, created = self.session.execute(statement).one()
        except IntegrityError:
            # MERGE, unlike ON CONFLICT, fails when another transaction inserted this email
            # after the statement began. That row is committed by the time the error comes,
            # so a second try updates it, as ON CONFLICT would have.
            user, created = self.session.execute(statement).one()
        return user, created

    def find_by_email(self, email: str) -> User | None:
        """Return the user with this email, or None."""
        return self.session.scalars(queries.user_by_email(email)).one_or_none()

    def get(self, user_id: int) -> User | None:
        """Return the user with this id, or None."""
        return self.session.scalars(queries.user_by_id(user_id)).one_or_none()


class AsyncUserRepository:
    """Users through an ``AsyncSession``."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def create(self, *, email: str, name: str) -> User:
        """Insert a user; raise ``DuplicateEmailError`` when the email is taken."""
        try:
            async with self.session.begin_nested():
                return (await self.session.scalars(queries.insert_user(email, name))).one()
        except IntegrityError as exc:
            raise DuplicateEmailError(email) from exc

    async def upsert(self, *, email: str, name: str) -> tuple[User, bool]:
        """Create the user, or rename the one with this email; True when it was created."""
        statement = (await async_pg_server(self.session)).upsert_user(email, name)
        try:
            async with self.session.begin_nested():
                user, created = (await self.session.execute(statement)).one()
        except IntegrityError:
            # A concurrent insert of this email made MERGE fail: see UserRepository.upsert.
            user, created = (await self.session.execute(statement)).one()
        return user, created

    async def find_by_email(self, email: str) -> User | None:
        """Return the user with this email, or None."""
        return (await self.session.scalars(queries.user_by_email(email))).one_or_none()

    async def get(self, user_id: int) -> User | None:
        """Return the user with this id, or None."""
        return (await self.session.scalars(queries.user_by_id(user_id))).one_or_none()


class ItemRepository:
    """Items through a sync ``Session``."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def create(self, *, name: str, description: str, price: Decimal) -> Item:
        """Insert an item."""
        return self.session.scalars(queries.insert_item(name, description, price)).one()

    def get(self, item_id: int) -> Item | None:
        """Return the item with this id, or None."""
        return self.session.scalars(queries.item_by_id(item_id)).one_or_none()

    def list(self) -> Sequence[Item]:
        """Return every item."""
        return self.session.scalars(queries.all_items()).all()

    def update(
        self,
        item_id: int,
        *,
        name: str | None = None,
        description: str | None = None,
        price: Decimal | None = None,
    ) -> Item | None:
        """Change the fields given (not None); return the item, or None if it does not exist."""
        statement = queries.update_item(item_id, name=name, description=description, price=price)
        return self.session.scalars(statement).one_or_none()

    def delete(self, item_id: int) -> bool:
        """Delete the item; return whether it existed."""
        return self.session.scalars(queries.delete_item(item_id)).one_or_none() is not None


class AsyncItemRepository:
    """Items through an ``AsyncSession``."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def create(self, *, name: str, description: str, price: Decimal) -> Item:
        """Insert an item."""
        return (await self.session.scalars(queries.insert_item(name, description, price))).one()

    async def get(self, item_id: int) -> Item | None:
        """Return the item with this id, or None."""
        return (await self.session.scalars(queries.item_by_id(item_id))).one_or_none()

    async def list(self) -> Sequence[Item]:
        """Return every item."""
        return (await self.session.scalars(queries.all_items())).all()

    async def update(
        self,
        item_id: int,
        *,
        name: str | None = None,
        description: str | None = None,
        price: Decimal | None = None,
    ) -> Item | None:
        """Change the fields given (not None); return the item, or None if it does not exist."""
        statement = queries.update_item(item_id, name=name, description=description, price=price)
        return (await self.session.scalars(statement)).one_or_none()

    async def delete(self, item_id: int) -> bool:
        """Delete the item; return whether it existed."""
        deleted = await self.session.scalars(queries.delete_item(item_id))
        return deleted.one_or_none() is not None


class OrderRepository:
    """Orders through a sync ``Session``."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def create(self, *, user_id: int, total: Decimal) -> Order:
        """Insert an order for an existing user, with a new public reference."""
        statement = pg_server(self.session).insert_order(user_id, total)
        return self.session.scalars(statement).one()

    def get_by_reference(self, reference: UUID) -> Order | None:
        """Return the order with this public reference, or None."""
        return self.session.scalars(queries.order_by_reference(reference)).one_or_none()

    def list_for_user(self, user_id: int) -> Sequence[Order]:
        """Return the user's orders."""
        return self.session.scalars(queries.orders_of_user(user_id)).all()


class AsyncOrderRepository:
    """Orders through an ``AsyncSession``."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def create(self, *, user_id: int, total: Decimal) -> Order:
        """Insert an order for an existing user, with a new public reference."""
        statement = (await async_pg_server(self.session)).insert_order(user_id, total)
        return (await self.session.scalars(statement)).one()

    async def get_by_reference(self, reference: UUID) -> Order | None:
        """Return the order with this public reference, or None."""
        statement = queries.order_by_reference(reference)
        return (await self.session.scalars(statement)).one_or_none()

    async def list_for_user(self, user_id: int) -> Sequence[Order]:
        """Return the user's orders."""
        return (await self.session.scalars(queries.orders_of_user(user_id))).all()
