"""A fixed-window rate limiter on redis.asyncio."""


async def allow(client, key, limit, window_seconds=60):
    count = await client.incr(key)
    if count == 1:
        await client.expire(key, window_seconds)
    return count <= limit
