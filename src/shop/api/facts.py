"""Small facts about a user, cached in Redis, each with its own TTL (see ``FactsInHash``)."""

PROFILE = "profile"
ORDERS_TOTAL = "orders_total"


def user_facts(user_id: int) -> str:
    """The name a user's facts are filed under."""
    return f"user:{user_id}:facts"
