"""Settings read from the environment (DATABASE_URL, REDIS_URL, ...)."""

from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Where the service finds its servers.

    The scheme of ``database_url`` picks the driver for the whole app:
    ``postgresql+psycopg://`` runs it synchronously (psycopg 3 and redis-py),
    ``postgresql+asyncpg://`` asynchronously (asyncpg and redis.asyncio).
    """

    model_config = SettingsConfigDict(env_file=None, extra="ignore")

    database_url: str = "postgresql+psycopg://postgres@127.0.0.1:5432/shop"
    redis_url: str = "redis://127.0.0.1:6379/0"
    # Small on purpose: the cache is optional, so a dead Redis must cost a
    # request milliseconds, not the client library's default patience.
    redis_timeout: float = 0.25
    items_cache_ttl: int = 60
    # Each cached fact about a user expires on its own: the profile rarely changes.
    profile_cache_ttl: int = 300
    orders_total_cache_ttl: int = 60
    # Counted from the cart's last read or write: a cart in use does not expire.
    cart_ttl: int = 3600
