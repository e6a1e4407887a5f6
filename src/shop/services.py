"""Business questions answered from the repositories' tables."""

from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from shop import queries


class OrderService:
    """Order arithmetic through a sync ``Session``."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def get_user_total(self, user_id: int) -> Decimal:
        """Sum of the user's order totals; 0 when the user has none."""
        return self.session.scalars(queries.user_total(user_id)).one()


class AsyncOrderService:
    """Order arithmetic through an ``AsyncSession``."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get_user_total(self, user_id: int) -> Decimal:
        """Sum of the user's order totals; 0 when the user has none."""
        return (await self.session.scalars(queries.user_total(user_id))).one()
