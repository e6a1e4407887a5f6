"""Per-test isolation overhead of PostgreSQL and Redis together, five ways, under both drivers.

    python bench/isolation.py                    # local PostgreSQL 15 + Redis 7
    python bench/isolation.py --quick            # a handful of tests of each, to try it
    python bench/isolation.py --backend docker --pg 16 --redis 8 --tests 500

One test body (a user, an item and an order through shop's repositories, committed and
read back, then a value set and got through shop's cache) runs under each strategy, timed
from its setup to its teardown, FLUSHDB included. A strategy's overhead is that total
minus the median time of the same body alone: a plain session that commits for real and
is never cleaned up. Every database is migrated with ``shop.db.migrate``, as the suite
does; drop_all/create_all rebuilds the same tables from shop's metadata. Each strategy
has its own database and Redis database, so what one cleanup leaves behind (TRUNCATE's
new relation files, say) is paid by that strategy's own next test. Strategies run in
shuffled, interleaved rounds after a warm-up, so drift hits them all alike. The async
driver's tests run on one event loop, each timed inside its coroutine.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import random
import shlex
import statistics
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AsyncExitStack, ExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

import redis
import redis.asyncio
from harness import Plot, Result, Stat, Table, Target, save
from sqlalchemy import Connection, create_engine, func, inspect, select, text
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.orm import Session

from servicematrix import isolation
from servicematrix.backends import select_backend
from servicematrix.config import Config
from servicematrix.errors import ServiceMatrixError
from servicematrix.info import ServerInfo
from servicematrix.provision import Worker, new_run_id
from shop import repositories as repos
from shop.cache import AsyncCacheService, CacheService
from shop.db import migrate
from shop.models import Base

BASELINE = "work alone"
OURS = "savepoint rollback"
STRATEGIES = (OURS, "TRUNCATE", "DELETE", "drop_all/create_all", "template database")
SLOW = ("drop_all/create_all", "template database")
LANES = (BASELINE, *STRATEGIES)
DRIVERS = ("sync", "async")
SCHEMES = {"sync": "postgresql+psycopg", "async": "postgresql+asyncpg"}
LABELS = {"sync": "psycopg 3 + redis-py", "async": "asyncpg + redis.asyncio"}
TARGET_MS = 1.0
TARGET_RATIO = 10.0
# Unique data for every test body and every cloned database, whatever the strategy.
SERIAL = itertools.count(1)
CLONES_LEFT = text("SELECT count(*) FROM pg_database WHERE left(datname, 2) = 't_'")


def check(condition: bool, what: str) -> None:
    """Stop the benchmark when a strategy did not do its job: its figures would mean nothing."""
    if not condition:
        raise RuntimeError(f"isolation benchmark: {what}")


@dataclass
class Samples:
    """Milliseconds per test: in all, and the strategy's parts around the work."""

    total: list[float] = field(default_factory=list)
    setup: list[float] = field(default_factory=list)
    teardown: list[float] = field(default_factory=list)
    flush: list[float] = field(default_factory=list)

    def add(self, start: float, entered: float, worked: float, left: float, end: float) -> None:
        for samples, seconds in (
            (self.total, end - start),
            (self.setup, entered - start),
            (self.teardown, left - worked),
            (self.flush, end - left),
        ):
            samples.append(seconds * 1000)

    @property
    def around(self) -> list[float]:
        """Setup plus teardown plus FLUSHDB of each test: the strategy timed directly."""
        return [sum(parts) for parts in zip(self.setup, self.teardown, self.flush, strict=True)]


@dataclass
class Lane:
    """Where one strategy runs: its database, an engine, and its own Redis database.

    The template strategy's engine is an AUTOCOMMIT one on the server's own database.
    """

    name: str
    pg: ServerInfo
    engine: Any
    redis_url: str
    redis: Any
    samples: Samples = field(default_factory=Samples)


# What the schema strategies do around a test, on a connection; the async lanes run the
# same functions through AsyncConnection.run_sync.
def delete_rows(connection: Connection) -> None:
    for table in reversed(Base.metadata.sorted_tables):
        connection.execute(table.delete())


AROUND: dict[str, tuple[Callable[[Connection], None] | None, Callable[[Connection], None]]] = {
    "DELETE": (None, delete_rows),
    "drop_all/create_all": (Base.metadata.create_all, Base.metadata.drop_all),
}


@contextmanager
def sync_isolated(lane: Lane) -> Iterator[Session]:
    if lane.name == OURS:
        with isolation.rollback_session(lane.engine) as session:
            yield session
    elif lane.name == "TRUNCATE":
        with isolation.committed_session(lane.engine) as session:
            yield session
    elif lane.name == "template database":
        name = f"t_{next(SERIAL)}"
        with lane.engine.connect() as admin:
            admin.exec_driver_sql(f"CREATE DATABASE {name} TEMPLATE {lane.pg.database}")
        engine = create_engine(replace(lane.pg, database=name).url(SCHEMES["sync"]))
        with Session(engine) as session:
            yield session
        engine.dispose()
        with lane.engine.connect() as admin:
            admin.exec_driver_sql(f"DROP DATABASE {name}")
    else:
        before, after = AROUND.get(lane.name, (None, None))
        if before:
            with lane.engine.begin() as connection:
                before(connection)
        with Session(lane.engine) as session:
            yield session
        if after:
            with lane.engine.begin() as connection:
                after(connection)


@asynccontextmanager
async def async_isolated(lane: Lane) -> AsyncIterator[AsyncSession]:
    if lane.name == OURS:
        async with isolation.async_rollback_session(lane.engine) as session:
            yield session
    elif lane.name == "TRUNCATE":
        async with isolation.async_committed_session(lane.engine) as session:
            yield session
    elif lane.name == "template database":
        name = f"t_{next(SERIAL)}"
        async with lane.engine.connect() as admin:
            await admin.exec_driver_sql(f"CREATE DATABASE {name} TEMPLATE {lane.pg.database}")
        engine = create_async_engine(replace(lane.pg, database=name).url(SCHEMES["async"]))
        async with AsyncSession(engine) as session:
            yield session
        await engine.dispose()
        async with lane.engine.connect() as admin:
            await admin.exec_driver_sql(f"DROP DATABASE {name}")
    else:
        before, after = AROUND.get(lane.name, (None, None))
        if before:
            async with lane.engine.begin() as connection:
                await connection.run_sync(before)
        async with AsyncSession(lane.engine) as session:
            yield session
        if after:
            async with lane.engine.begin() as connection:
                await connection.run_sync(after)


def sync_work(session: Session, cache: CacheService, n: int) -> None:
    """The test body: three rows committed and read back, one value cached and read."""
    user = repos.UserRepository(session).create(email=f"user{n}@example.com", name=f"User {n}")
    item = repos.ItemRepository(session).create(name=f"Item {n}", description="", price=Decimal(n))
    order = repos.OrderRepository(session).create(user_id=user.id, total=item.price)
    user_id, item_id, reference = user.id, item.id, order.reference
    session.commit()
    found = repos.OrderRepository(session).get_by_reference(reference)
    check(found is not None and found.user_id == user_id, "the order was not read back")
    check(repos.ItemRepository(session).get(item_id) is not None, "the item was not read back")
    check(cache.set(f"order:{reference}", {"user": user_id}), "the cache refused a value")
    check(cache.get(f"order:{reference}") == {"user": user_id}, "the cache lost a value")


async def async_work(session: AsyncSession, cache: AsyncCacheService, n: int) -> None:
    """The same test body through asyncpg and redis.asyncio."""
    users, items = repos.AsyncUserRepository(session), repos.AsyncItemRepository(session)
    user = await users.create(email=f"user{n}@example.com", name=f"User {n}")
    item = await items.create(name=f"Item {n}", description="", price=Decimal(n))
    order = await repos.AsyncOrderRepository(session).create(user_id=user.id, total=item.price)
    user_id, item_id, reference = user.id, item.id, order.reference
    await session.commit()
    found = await repos.AsyncOrderRepository(session).get_by_reference(reference)
    check(found is not None and found.user_id == user_id, "the order was not read back")
    check(await items.get(item_id) is not None, "the item was not read back")
    check(await cache.set(f"order:{reference}", {"user": user_id}), "the cache refused a value")
    check(await cache.get(f"order:{reference}") == {"user": user_id}, "the cache lost a value")


def time_sync(lane: Lane) -> None:
    stack = ExitStack()
    start = time.perf_counter()
    with stack:
        session = stack.enter_context(sync_isolated(lane))
        entered = time.perf_counter()
        sync_work(session, CacheService(lane.redis), next(SERIAL))
        worked = time.perf_counter()
    left = time.perf_counter()
    if lane.name != BASELINE:
        lane.redis.flushdb()
    lane.samples.add(start, entered, worked, left, time.perf_counter())


async def time_async(lane: Lane) -> None:
    stack = AsyncExitStack()
    start = time.perf_counter()
    async with stack:
        session = await stack.enter_async_context(async_isolated(lane))
        entered = time.perf_counter()
        await async_work(session, AsyncCacheService(lane.redis), next(SERIAL))
        worked = time.perf_counter()
    left = time.perf_counter()
    if lane.name != BASELINE:
        await lane.redis.flushdb()
    lane.samples.add(start, entered, worked, left, time.perf_counter())


def schedule(counts: dict[str, int], seed: int) -> list[list[str]]:
    """Rounds of lane names: each in ``counts[name]`` rounds spread evenly, shuffled."""
    rng = random.Random(seed)  # noqa: S311 - orders rounds, guards no secret
    rounds = max(counts.values())
    plan = []
    for r in range(rounds):
        here = [n for n, c in counts.items() if (r + 1) * c // rounds > r * c // rounds]
        rng.shuffle(here)
        plan.append(here)
    return plan


def databases(pg: ServerInfo, driver: str) -> dict[str, ServerInfo]:
    """A migrated database per lane; the template strategy's one is its template."""
    admin = create_engine(pg.url(SCHEMES["sync"]), isolation_level="AUTOCOMMIT")
    infos = {}
    try:
        for i, name in enumerate(LANES):
            infos[name] = replace(pg, database=f"{driver}_{i}")
            with admin.connect() as connection:
                connection.exec_driver_sql(f"CREATE DATABASE {infos[name].database}")
            migrate(infos[name].url(SCHEMES["sync"]))
    finally:
        admin.dispose()
    engine = create_engine(infos["drop_all/create_all"].url(SCHEMES["sync"]))
    Base.metadata.drop_all(engine)  # its tests start with create_all
    engine.dispose()
    return infos


def lanes(pg: ServerInfo, redis_info: ServerInfo, driver: str) -> list[Lane]:
    make_engine: Callable[..., Any] = create_engine if driver == "sync" else create_async_engine
    client = redis.Redis if driver == "sync" else redis.asyncio.Redis
    found = []
    for i, (name, info) in enumerate(databases(pg, driver).items()):
        # The template strategy's engine runs CREATE and DROP DATABASE on the server's own.
        template = name == "template database"
        url, args = (pg, {"isolation_level": "AUTOCOMMIT"}) if template else (info, {})
        redis_url = replace(redis_info, database=DRIVERS.index(driver) * len(LANES) + i).url()
        engine = make_engine(url.url(SCHEMES[driver]), **args)
        found.append(Lane(name, info, engine, redis_url, client.from_url(redis_url)))
    return found


def rows_and_clones(info: ServerInfo) -> tuple[int, int]:
    """Rows in shop's tables of this database, and cloned test databases on the server."""
    engine = create_engine(info.url(SCHEMES["sync"]))
    try:
        with engine.connect() as connection:
            present = set(inspect(connection).get_table_names())
            rows = sum(
                connection.execute(select(func.count()).select_from(table)).scalar_one()
                for table in Base.metadata.sorted_tables
                if table.name in present
            )
            return rows, connection.execute(CLONES_LEFT).scalar_one()
    finally:
        engine.dispose()


def verify(driver: str, found: list[Lane], baseline_runs: int) -> None:
    """The work committed for real, and every strategy left no row, key or database behind."""
    for lane in found:
        rows, clones = rows_and_clones(lane.pg)
        expected = 3 * baseline_runs if lane.name == BASELINE else 0
        check(rows == expected, f"{driver} {lane.name}: {rows} rows left, {expected} expected")
        check(clones == 0, f"{driver}: {clones} cloned databases left")
        with redis.Redis.from_url(lane.redis_url) as client:
            keys = int(client.dbsize())
        check(lane.name == BASELINE or keys == 0, f"{driver} {lane.name}: {keys} Redis keys left")


def measure(
    driver: str, pg: ServerInfo, redis_info: ServerInfo, args: argparse.Namespace
) -> dict[str, Samples]:
    """Warm up, then measure every strategy of one driver in shuffled interleaved rounds."""
    counts = {name: args.slow_tests if name in SLOW else args.tests for name in LANES}
    warmup = schedule({n: min(c, args.warmup) for n, c in counts.items()}, args.seed + 1)
    plan = schedule(counts, args.seed)
    print(f"{LABELS[driver]}: {len(plan)} rounds after {args.warmup}", flush=True)
    found = lanes(pg, redis_info, driver)
    by_name = {lane.name: lane for lane in found}
    with asyncio.Runner() as runner:  # one event loop for every async test
        for phase, rounds in (("warm-up", warmup), ("measured", plan)):
            for lane in found:
                lane.samples = Samples()
            for r, names in enumerate(rounds):
                for name in names:
                    if driver == "sync":
                        time_sync(by_name[name])
                    else:
                        runner.run(time_async(by_name[name]))
                if (r + 1) % 50 == 0 or r + 1 == len(rounds):
                    print(f"  {driver} {phase}: round {r + 1}/{len(rounds)}", flush=True)
        for lane in found:
            if driver == "sync":
                lane.engine.dispose()
                lane.redis.close()
            else:
                runner.run(lane.engine.dispose())
                runner.run(lane.redis.aclose())
    verify(driver, found, sum(names.count(BASELINE) for names in (*warmup, *plan)))
    for lane in found:
        print(f"  {lane.name}: median {statistics.median(lane.samples.total):.3f} ms per test")
    return {lane.name: lane.samples for lane in found}


def overheads(samples: dict[str, Samples]) -> dict[str, Stat]:
    """Each strategy's per-test totals minus the median of the work alone."""
    work = statistics.median(samples[BASELINE].total)
    return {name: Stat([t - work for t in samples[name].total], "ms") for name in STRATEGIES}


def times_ours(over: dict[str, Stat], name: str) -> float:
    ours = over[OURS].median
    return over[name].median / ours if ours > 0 else float("inf")


def x(ratio: float) -> str:
    return f"{ratio:.1f}x" if ratio != float("inf") else "inf (ours <= 0 ms)"


def table(driver: str, samples: dict[str, Samples], over: dict[str, Stat]) -> Table:
    work = Stat(samples[BASELINE].total, "ms")
    caption = (
        f"{LABELS[driver]}: overhead per test = total - median of the work alone "
        f"({work.median:.3f} ms, n={len(work.samples)})"
    )
    columns = ["strategy", "overhead median", "min", "max", "setup+teardown median"]
    rows = [
        [
            name,
            *over[name].cells()[:3],
            f"{statistics.median(samples[name].around):.3f} ms",
            x(times_ours(over, name)),
            str(len(over[name].samples)),
        ]
        for name in STRATEGIES
    ]
    return Table(caption, [*columns, "x slower than ours", "n"], rows)


def why_ours(samples: Samples, over: Stat) -> str:
    parts = {
        "setup (pool checkout, outer transaction)": statistics.median(samples.setup),
        "teardown (ROLLBACK TO SAVEPOINT, ROLLBACK)": statistics.median(samples.teardown),
        "FLUSHDB": statistics.median(samples.flush),
    }
    largest = max(parts, key=lambda p: parts[p])
    shown = ", ".join(f"{p} {v:.3f} ms" for p, v in parts.items())
    rest = over.median - sum(parts.values())
    return (
        f"median overhead {over.median:.3f} ms: {shown} (medians), {largest} the largest; "
        f"the work itself took about {abs(rest):.3f} ms {'more' if rest >= 0 else 'less'} "
        "than alone"
    )


def targets(driver: str, samples: dict[str, Samples], over: dict[str, Stat]) -> list[Target]:
    ours = over[OURS].median
    found = [
        Target(
            f"isolation overhead, median per test ({driver})",
            f"<= {TARGET_MS:g} ms",
            f"{ours:.3f} ms",
            ours <= TARGET_MS,
        )
    ]
    if not found[0].met:
        found[0].why = why_ours(samples[OURS], over[OURS])
    for name in SLOW:
        ratio = times_ours(over, name)
        target = Target(
            f">= {TARGET_RATIO:g}x cheaper than {name} ({driver})",
            f">= {TARGET_RATIO:g}x",
            f"{x(ratio)} ({over[name].median:.3f} ms vs {ours:.3f} ms)",
            ratio >= TARGET_RATIO,
        )
        if not target.met:
            target.why = (
                f"{name} costs {over[name].median:.3f} ms per test (setup "
                f"{statistics.median(samples[name].setup):.3f} ms, teardown "
                f"{statistics.median(samples[name].teardown):.3f} ms), ours {ours:.3f} ms: "
                + why_ours(samples[OURS], over[OURS])
            )
        found.append(target)
    return found


def summary(work: dict[str, float], over: dict[str, dict[str, Stat]]) -> str:
    sentences = []
    for driver, o in over.items():
        others = ", ".join(f"{name} {o[name].median:.2f} ms" for name in STRATEGIES[1:])
        sentences.append(
            f"Under {LABELS[driver]}, the savepoint rollback plus FLUSHDB adds "
            f"{o[OURS].median:.3f} ms to a test whose work alone takes {work[driver]:.2f} ms; "
            f"the other ways add {others}: the template database costs "
            f"{x(times_ours(o, 'template database'))} ours, drop_all/create_all "
            f"{x(times_ours(o, 'drop_all/create_all'))}."
        )
    return " ".join(sentences)


def result(
    samples: dict[str, dict[str, Samples]], pg: ServerInfo, redis_info: ServerInfo, load: float
) -> Result:
    over = {driver: overheads(s) for driver, s in samples.items()}
    work = {driver: statistics.median(s[BASELINE].total) for driver, s in samples.items()}
    series = {
        LABELS[d]: [[name, o[name].median] for name in STRATEGIES if o[name].median > 0]
        for d, o in over.items()
    }
    return Result(
        name="isolation",
        title="Per-test isolation overhead, PostgreSQL and Redis together",
        command=shlex.join(["python", "bench/isolation.py", *sys.argv[1:]]),
        summary=summary(work, over),
        tables=[table(d, s, over[d]) for d, s in samples.items()],
        targets=[t for d, s in samples.items() for t in targets(d, s, over[d])],
        plots=[
            Plot(
                "isolation.png",
                "Median isolation overhead per test",
                "strategy",
                "overhead (ms, log)",
                "bar",
                series,
                log_y=True,
            )
        ],
        notes=[
            f"PostgreSQL {pg.version} and {redis_info.product} {redis_info.version}, "
            f"{pg.backend} backend; "
            f"load average {load:.2f} over the last minute when the measurements ended.",
            "Test body: a user, an item and an order through shop's repositories, committed, "
            "read back, and one value set and got through shop's cache; unique data each time.",
            "Every database is migrated with shop.db.migrate; drop_all/create_all rebuilds "
            "the same tables from shop.models' metadata; the template is migrated once.",
            "Each strategy ends with FLUSHDB of its own Redis database; the work alone does not.",
            "Overhead includes what a strategy does to the work itself (commit() becoming a "
            "savepoint release, a new engine's first connection); setup+teardown excludes it.",
            "Medians at or below 0 ms are left out of the log-scale plot.",
        ],
    )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", default="local", help="servicematrix backend")
    parser.add_argument("--pg", default="15", help="PostgreSQL major version")
    parser.add_argument("--redis", default="7", help="Redis version, e.g. 7 or valkey-8")
    parser.add_argument("--tests", type=int, default=300, help="tests per cheap strategy")
    parser.add_argument(
        "--slow-tests", type=int, default=40, help="tests of drop_all/create_all and template"
    )
    parser.add_argument("--warmup", type=int, default=10, help="untimed tests per strategy")
    parser.add_argument("--seed", type=int, default=0, help="seed of the round order")
    parser.add_argument("--quick", action="store_true", help="a handful of tests of each")
    args = parser.parse_args()
    if args.quick:
        args.tests, args.slow_tests, args.warmup = 5, 3, 2
    return args


def main() -> None:
    args = parse_args()
    started = time.perf_counter()
    try:
        config = Config.parse({"backend": args.backend, "pg": args.pg, "redis": args.redis})
        with Worker(config, select_backend(config).name, new_run_id(), "bench") as worker:
            pg, redis_info = worker.ready().values()
            print(f"servers: {pg.describe()}; {redis_info.describe()}", flush=True)
            samples = {driver: measure(driver, pg, redis_info, args) for driver in DRIVERS}
            load = os.getloadavg()[0]
    except ServiceMatrixError as exc:
        sys.exit(f"isolation: {exc}")
    save(result(samples, pg, redis_info, load), time.perf_counter() - started)


if __name__ == "__main__":
    main()
