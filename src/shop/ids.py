"""UUIDv7 (RFC 9562) minted in Python, for servers without ``uuidv7()``.

Python gains ``uuid.uuid7`` only in 3.14. A version-7 UUID starts with the Unix
time in milliseconds, so references sort by creation time and index well.
"""

import os
import time
from uuid import UUID

MILLIS_BITS = (1 << 48) - 1
RANDOM_BITS = (1 << 62) - 1


def uuid7() -> UUID:
    """A new UUIDv7: Unix time in ms, the sub-millisecond fraction, then 62 random bits."""
    millis, nanos = divmod(time.time_ns(), 1_000_000)
    # RFC 9562 method 3, as PostgreSQL 18's uuidv7() does: the 12 bits after the
    # version hold the fraction of the millisecond, so one process's ids sort by time.
    fraction = nanos * 4096 // 1_000_000
    random_bits = int.from_bytes(os.urandom(8)) & RANDOM_BITS
    return UUID(
        int=(millis & MILLIS_BITS) << 80 | 0x7 << 76 | fraction << 64 | 0b10 << 62 | random_bits
    )
