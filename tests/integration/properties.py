"""What the property tests share: settings, strategies, the rules checked, and fixtures.

The rules (``storable``, ``encodable``, ``exact_amount``) say what PostgreSQL
and Redis keep as given. They are written here, from what the servers accept,
rather than imported from ``shop.columns`` (only its limits are), so a wrong
check there fails a property instead of agreeing with itself.
"""

import collections
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any, TypeVar

import httpx
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from shop.api.deps import get_cache, get_session
from shop.cache_logic import MAX_TTL
from shop.columns import MAX_ID, MAX_MONEY
from shop.config import Settings
from shop.main import create_app

from .support import AnyCache, cache_for, drawn, http_client, resolve

T = TypeVar("T")
EXAMPLES = 30
BASE = settings(
    deadline=None,
    database=None,  # nothing written into the checkout; a failure prints its example
    # Each example builds its own state (see the test modules); no fixture carries any over.
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
# The same examples on every plain run; a matrix cell draws its own share (support.drawn).
PROPERTIES = drawn(BASE, EXAMPLES)
# Through the API an example costs several requests: half as many examples.
API_PROPERTIES = drawn(BASE, EXAMPLES // 2)
Examples = collections.Counter[str]
CLEAN_CHAR = st.characters(codec="utf-8", exclude_characters="\x00")
UNSTORABLE = st.sampled_from("\x00\ud800\udbff\udc00\udfff")
SURROGATES = range(0xD800, 0xE000)
NUL, LONE_SURROGATE = "a\x00b", "a\ud800b"


def mix(*kinds: st.SearchStrategy[T]) -> st.SearchStrategy[T]:
    """Each kind equally often; unlike one_of, a kind listed twice is drawn twice as often."""
    return st.sampled_from(kinds).flatmap(lambda kind: kind)


def tainted(text: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """Texts with a NUL or a lone surrogate put in somewhere."""
    parts = st.tuples(text, UNSTORABLE, st.integers(0, 12))
    return parts.map(lambda p: p[0][: p[2]] + p[1] + p[0][p[2] :])


def texts(limit: int | None = None) -> st.SearchStrategy[str]:
    """Short texts, three in four storable and one tainted; and texts around ``limit`` long."""
    clean = st.text(CLEAN_CHAR, min_size=1, max_size=12)
    kinds = [clean, clean, clean, tainted(clean)]
    if limit is not None:
        sizes = st.integers(limit - 1, limit + 1)
        kinds.append(sizes.flatmap(lambda n: st.text(CLEAN_CHAR, min_size=n, max_size=n)))
    return mix(*kinds)


def storable(text: str, limit: int, shortest: int = 1) -> bool:
    """Whether PostgreSQL keeps ``text`` as given in a column of ``limit`` characters."""
    return shortest <= len(text) <= limit and not any(
        c == "\x00" or ord(c) in SURROGATES for c in text
    )


def encodable(text: str) -> bool:
    """Whether ``text`` has a UTF-8 encoding (no lone surrogate)."""
    return not any(ord(c) in SURROGATES for c in text)


def exact_amount(amount: Decimal) -> bool:
    """Whether numeric(10, 2) keeps ``amount`` as given: 0 to MAX_MONEY, whole cents."""
    return amount.is_finite() and 0 <= amount <= MAX_MONEY and (amount * 100) % 1 == 0


EXACT_AMOUNTS = st.decimals(min_value=0, max_value=MAX_MONEY, places=2)
AMOUNTS = mix(
    EXACT_AMOUNTS,
    EXACT_AMOUNTS,
    st.decimals(allow_nan=True, allow_infinity=True),
    st.decimals(min_value=-1, max_value=MAX_MONEY + 1, places=2),
    st.decimals(min_value=0, max_value=10, places=3),
)
# Prices as JSON number literals: Python's parser, and so FastAPI's, also reads NaN and
# Infinity, and takes 1e400 for infinity.
ODD_NUMBERS = st.sampled_from(["NaN", "Infinity", "-Infinity", "1e400", "1.005", "-0.01", "1e8"])
PRICE_LITERALS = mix(*[EXACT_AMOUNTS.map(str)] * 3, ODD_NUMBERS)
IDS = mix(st.integers(1, MAX_ID), st.integers(), st.sampled_from([0, MAX_ID + 1, -(2**31), 2**63]))
TTLS = mix(st.integers(1, 3600), st.integers(1, MAX_TTL), st.integers(-9, MAX_TTL + 9))
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | texts(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts(), inner, max_size=4),
    max_leaves=8,
)
NOT_JSON = st.sampled_from([float("nan"), float("inf"), [float("-inf")], Decimal(1), {1, 2}, b""])


@pytest.fixture
def examples(record_property: Callable[[str, object], None]) -> Iterator[Examples]:
    """Counts of examples run and refused, recorded in the JUnit XML."""
    counts: Examples = collections.Counter()
    yield counts
    record_property("examples", counts["run"])
    record_property("refused", counts["refused"])


@asynccontextmanager
async def fresh_cache(redis_client: Any) -> AsyncIterator[Any]:
    """A new cache on the test's Redis database, emptied when the example ends."""
    try:
        yield cache_for(redis_client)
    finally:
        await resolve(redis_client.flushdb())


class ExampleApi:
    """The real app, built once per test (FastAPI builds its routes on first use); each
    example hands it the session and cache of its own."""

    def __init__(self, settings: Settings) -> None:
        self.app = create_app(settings)
        self.session: Session | AsyncSession | None = None
        self.cache: AnyCache | None = None
        self.app.dependency_overrides[get_session] = lambda: self.session
        self.app.dependency_overrides[get_cache] = lambda: self.cache

    @asynccontextmanager
    async def client(
        self, session: Session | AsyncSession, cache: AnyCache
    ) -> AsyncIterator[httpx.AsyncClient]:
        """An httpx client on the app, which uses ``session`` and ``cache`` until it closes."""
        self.session, self.cache = session, cache
        try:
            async with http_client(self.app) as client:
                yield client
        finally:
            self.session = self.cache = None


@pytest.fixture
def api(settings: Settings) -> ExampleApi:
    """The app for a test's examples."""
    return ExampleApi(settings)
