"""Per-test isolation overhead of PostgreSQL and Redis together, five ways, under both drivers.

Overhead: a test's time from setup to teardown and FLUSHDB, minus the median of the same body
alone (committed, never cleaned up). Each strategy has its own database and Redis database; all
run in shuffled interleaved rounds after a warm-up, each test timed inside its coroutine.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import statistics
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, replace
from decimal import Decimal
from inspect import isawaitable
from typing import Any

import redis.asyncio
from harness import Plot, Result, Stat, Table, Target, parser, save
from sqlalchemy import Connection, create_engine, func, inspect, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession, create_async_engine
from sqlalchemy.orm import Session

from servicematrix import ServerInfo, ServiceMatrixError, backends, config, isolation, provision
from shop import repositories as repos
from shop.cache import AsyncCacheService, CacheService
from shop.db import migrate
from shop.models import Base

BASELINE, OURS = "work alone", "savepoint rollback"
STRATEGIES = (OURS, "TRUNCATE", "DELETE", "drop_all/create_all", "template database")
SLOW, LANES = STRATEGIES[3:], (BASELINE, *STRATEGIES)
TARGET_MS, TARGET_RATIO = 1.0, 10.0
SERIAL = itertools.count(1)  # unique data for every test body and every cloned database
CLONES_LEFT = text("SELECT count(*) FROM pg_database WHERE left(datname, 2) = 't_'")
# Every pair is (sync, async); a driver is its index in them.
Pair = tuple[Callable[..., Any], Callable[..., Any]]
DRIVERS, SCHEMES = ("sync", "async"), ("postgresql+psycopg", "postgresql+asyncpg")
LABELS = ("psycopg 3 + redis-py", "asyncpg + redis.asyncio")
ENGINES: Pair = (create_engine, create_async_engine)
CLIENTS: Pair = (redis.Redis.from_url, redis.asyncio.Redis.from_url)
SESSIONS, CACHES = (Session, AsyncSession), (CacheService, AsyncCacheService)
USERS: Pair = (repos.UserRepository, repos.AsyncUserRepository)
ITEMS: Pair = (repos.ItemRepository, repos.AsyncItemRepository)
ORDERS: Pair = (repos.OrderRepository, repos.AsyncOrderRepository)
ROLLBACK: Pair = (isolation.rollback_session, isolation.async_rollback_session)
COMMITTED: Pair = (isolation.committed_session, isolation.async_committed_session)
PLUGIN = {OURS: ROLLBACK, "TRUNCATE": COMMITTED}
SPANS = {"total": (0, 4), "setup": (0, 1), "teardown": (2, 3), "flush": (3, 4)}
NOTES = [
    "Test body: a user, item and order through shop's repositories, committed and read back, "
    "and a value set and got through shop's cache; unique data each time.",
    "Every database is migrated with shop.db.migrate; drop_all/create_all uses shop.models.",
    "Each strategy ends with FLUSHDB of its own Redis database; the work alone does not.",
    "Overhead includes a strategy's effect on the work (commit() releasing a savepoint, a new "
    "engine's first connection); setup+teardown excludes it.",
    "Medians at or below 0 ms are left out of the log-scale plot.",
]


def check(condition: bool, what: str) -> None:
    if not condition:  # a strategy did not do its job: its figures would mean nothing
        raise RuntimeError(f"isolation benchmark: {what}")


@dataclass
class Lane:
    name: str
    driver: int
    pg: ServerInfo
    engine: Any  # the template strategy's: AUTOCOMMIT, on the server's own database
    redis_url: str
    redis: Any
    marks: list[tuple[float, ...]]  # each test's clock at start, entered, worked, left, flushed

    def ms(self, *spans: str) -> list[float]:
        return [sum(m[SPANS[s][1]] - m[SPANS[s][0]] for s in spans) * 1000 for m in self.marks]


async def maybe(value: Any) -> Any:
    return await value if isawaitable(value) else value


@asynccontextmanager
async def entered(manager: Any) -> AsyncIterator[Any]:
    async with AsyncExitStack() as stack:
        enter = stack.enter_async_context if hasattr(manager, "__aenter__") else stack.enter_context
        yield await maybe(enter(manager))


async def on(engine: Any, work: Callable[[Connection], object], begin: bool = True) -> None:
    async with entered(engine.begin() if begin else engine.connect()) as conn:
        await maybe(conn.run_sync(work) if isinstance(conn, AsyncConnection) else work(conn))


def delete_rows(conn: Connection) -> None:
    for table in reversed(Base.metadata.sorted_tables):
        conn.execute(table.delete())


@asynccontextmanager
async def isolated(lane: Lane) -> AsyncIterator[Any]:
    d, engine, name = lane.driver, lane.engine, lane.name
    if name == "template database":
        clone = f"t_{next(SERIAL)}"
        create = f"CREATE DATABASE {clone} TEMPLATE {lane.pg.database}"
        await on(engine, lambda admin: admin.exec_driver_sql(create), begin=False)
        engine = ENGINES[d](replace(lane.pg, database=clone).url(SCHEMES[d]))
    elif name == "drop_all/create_all":
        await on(engine, Base.metadata.create_all)
    async with entered(PLUGIN.get(name, SESSIONS)[d](engine)) as session:
        yield session
    if name == "template database":
        await maybe(engine.dispose())
        await on(lane.engine, lambda admin: admin.exec_driver_sql(f"DROP DATABASE {clone}"), False)
    elif name in ("DELETE", "drop_all/create_all"):
        await on(engine, delete_rows if name == "DELETE" else Base.metadata.drop_all)


async def timed(lane: Lane) -> None:
    """One test, timed: three rows committed and read back, one value cached and read."""
    start = time.perf_counter()
    async with isolated(lane) as session:
        entered_at, n, d = time.perf_counter(), next(SERIAL), lane.driver
        users, items, orders = USERS[d](session), ITEMS[d](session), ORDERS[d](session)
        cache = CACHES[d](lane.redis)
        user = await maybe(users.create(email=f"user{n}@example.com", name=f"User {n}"))
        item = await maybe(items.create(name=f"Item {n}", description="", price=Decimal(n)))
        order = await maybe(orders.create(user_id=user.id, total=item.price))
        user_id, item_id, reference = user.id, item.id, order.reference
        await maybe(session.commit())
        found = await maybe(orders.get_by_reference(reference))
        check(found is not None and found.user_id == user_id, "the order was not read back")
        check(await maybe(items.get(item_id)) is not None, "the item was not read back")
        key, value = f"order:{reference}", {"user": user_id}
        check(await maybe(cache.set(key, value)), "the cache refused a value")
        check(await maybe(cache.get(key)) == value, "the cache lost a value")
        worked = time.perf_counter()
    left = time.perf_counter()
    if lane.name != BASELINE:
        await maybe(lane.redis.flushdb())
    lane.marks.append((start, entered_at, worked, left, time.perf_counter()))


def schedule(counts: dict[str, int], seed: int) -> list[list[str]]:
    """Rounds of lane names: each in ``counts[name]`` rounds spread evenly, shuffled."""
    rng, k = random.Random(seed), max(counts.values())  # noqa: S311 - guards no secret
    plan = [[n for n, c in counts.items() if (r + 1) * c // k > r * c // k] for r in range(k)]
    for here in plan:
        rng.shuffle(here)
    return plan


def verify(found: dict[str, Lane], baseline_runs: int) -> None:
    """The work committed for real, and every strategy left no row, key or database behind."""
    for name, lane in found.items():
        engine, where = create_engine(lane.pg.url(SCHEMES[0])), f"{DRIVERS[lane.driver]} {name}"
        with engine.connect() as db:
            tables = [t for t in Base.metadata.sorted_tables if inspect(db).has_table(t.name)]
            rows = sum(db.execute(select(func.count()).select_from(t)).scalar_one() for t in tables)
            clones = db.execute(CLONES_LEFT).scalar_one()
        engine.dispose()
        with redis.Redis.from_url(lane.redis_url) as client:
            keys = int(client.dbsize())
        expected = 3 * baseline_runs if name == BASELINE else 0
        check(rows == expected, f"{where}: {rows} rows left, {expected} expected")
        check(clones == 0, f"{where}: {clones} cloned databases left")
        check(name == BASELINE or keys == 0, f"{where}: {keys} Redis keys left")


def measure(d: int, pg: ServerInfo, redis_info: ServerInfo, args: Any) -> dict[str, Lane]:
    admin, found = create_engine(pg.url(SCHEMES[0]), isolation_level="AUTOCOMMIT"), {}
    for i, name in enumerate(LANES):
        own = replace(pg, database=f"{DRIVERS[d]}_{i}")
        with admin.connect() as conn:
            conn.exec_driver_sql(f"CREATE DATABASE {own.database}")
        migrate(own.url(SCHEMES[0]))
        if name == "drop_all/create_all":  # its tests start with create_all
            Base.metadata.drop_all(schema := create_engine(own.url(SCHEMES[0])))
            schema.dispose()
        url, options = (pg, {"isolation_level": "AUTOCOMMIT"}) if name == SLOW[1] else (own, {})
        redis_url = replace(redis_info, database=d * len(LANES) + i).url()
        engine = ENGINES[d](url.url(SCHEMES[d]), **options)
        found[name] = Lane(name, d, own, engine, redis_url, CLIENTS[d](redis_url), [])
    admin.dispose()
    counts = {name: args.slow_tests if name in SLOW else args.tests for name in LANES}
    warmup = schedule({n: min(c, args.warmup) for n, c in counts.items()}, args.seed + 1)
    plan = schedule(counts, args.seed)
    print(f"{LABELS[d]}: {len(plan)} rounds after {args.warmup}", flush=True)
    with asyncio.Runner() as runner:
        for phase, rounds in (("warm-up", warmup), ("measured", plan)):
            for lane in found.values():
                lane.marks.clear()
            for r, names in enumerate(rounds):
                for name in names:
                    runner.run(timed(found[name]))
                if (r + 1) % 50 == 0 or r + 1 == len(rounds):
                    print(f"  {DRIVERS[d]} {phase}: round {r + 1}/{len(rounds)}", flush=True)
        for lane in found.values():
            runner.run(maybe(lane.engine.dispose()))
            runner.run(maybe(getattr(lane.redis, "aclose", lane.redis.close)()))
    verify(found, sum(names.count(BASELINE) for names in (*warmup, *plan)))
    return found


def report(d: int, lanes: dict[str, Lane]) -> tuple[Table, list[Target], str, list[list[Any]]]:
    alone = Stat(lanes[BASELINE].ms("total"), "ms")
    over = {n: Stat([t - alone.median for t in lanes[n].ms("total")], "ms") for n in STRATEGIES}
    ours, inf, goal = over[OURS].median, float("inf"), f">= {TARGET_RATIO:g}x"
    ratio = {n: over[n].median / ours if ours > 0 else inf for n in STRATEGIES}
    times = {n: f"{r:.1f}x" if r != inf else "inf (ours <= 0 ms)" for n, r in ratio.items()}
    parts = ("setup", "teardown", "flush")
    around = {n: f"{statistics.median(lanes[n].ms(*parts)):.3f} ms" for n in STRATEGIES}
    rows = [[n, *over[n].cells()[:3], around[n], times[n], over[n].cells()[3]] for n in STRATEGIES]
    caption = f"{LABELS[d]}: overhead per test = total - median of the work alone "
    caption += f"({alone.median:.3f} ms, n={len(alone.samples)})"
    columns = ["strategy", "overhead median", "min", "max", "setup+teardown median"]
    table = Table(caption, [*columns, "x slower than ours", "n"], rows)
    p = [statistics.median(lanes[OURS].ms(part)) for part in parts]
    why = f"ours {ours:.3f} ms: setup {p[0]:.3f}, teardown {p[1]:.3f}, FLUSHDB {p[2]:.3f} ms "
    why += f"(medians); the work itself {ours - sum(p):+.3f} ms against alone"
    what, met = f"isolation overhead, median per test ({DRIVERS[d]})", ours <= TARGET_MS
    targets = [Target(what, f"<= {TARGET_MS:g} ms", f"{ours:.3f} ms", met, "" if met else why)]
    for n in SLOW:
        what, met = f"{goal} cheaper than {n} ({DRIVERS[d]})", ratio[n] >= TARGET_RATIO
        vs = f"{times[n]} ({over[n].median:.3f} ms vs {ours:.3f} ms)"
        slow = "" if met else f"{n}: setup+teardown {around[n]}; {why}"
        targets.append(Target(what, goal, vs, met, slow))
    others = ", ".join(f"{n} {over[n].median:.2f} ms" for n in STRATEGIES[1:])
    summary = f"Under {LABELS[d]}, the savepoint rollback plus FLUSHDB adds {ours:.3f} ms to a "
    summary += f"test whose work alone takes {alone.median:.2f} ms; the other ways add {others}: "
    summary += f"the template database costs {times[SLOW[1]]} ours, {SLOW[0]} {times[SLOW[0]]}."
    return table, targets, summary, [[n, over[n].median] for n in STRATEGIES if over[n].median > 0]


def main() -> None:
    args = parser(__doc__)
    args.add_argument("--backend", default="local", help="servicematrix backend")
    args.add_argument("--pg", default="15", help="PostgreSQL major version")
    args.add_argument("--redis", default="7", help="Redis version, e.g. 7 or valkey-8")
    args.add_argument("--tests", type=int, default=300, help="tests per cheap strategy")
    args.add_argument("--slow-tests", type=int, default=40, help="tests per slow strategy")
    args.add_argument("--warmup", type=int, default=10, help="untimed tests per strategy")
    args.add_argument("--seed", type=int, default=0, help="seed of the round order")
    args.add_argument("--quick", action="store_true", help="a handful of tests of each")
    chosen = args.parse_args()
    if chosen.quick:
        chosen.tests, chosen.slow_tests, chosen.warmup = 5, 3, 2
    try:
        settings = config.Config.parse({k: getattr(chosen, k) for k in ("backend", "pg", "redis")})
        backend = backends.select_backend(settings).name
        with provision.Worker(settings, backend, provision.new_run_id(), "bench") as worker:
            pg, redis_info = worker.ready().values()
            print(f"servers: {pg.describe()}; {redis_info.describe()}", flush=True)
            reports = [report(d, measure(d, pg, redis_info, chosen)) for d in (0, 1)]
            load = os.getloadavg()[0]
    except ServiceMatrixError as exc:
        raise SystemExit(f"isolation: {exc}") from None
    tables, targets, summaries, points = zip(*reports, strict=True)
    series, title = dict(zip(LABELS, points, strict=True)), "Median isolation overhead per test"
    plot = Plot("isolation.png", title, "strategy", "overhead (ms, log)", "bar", series, log_y=True)
    versions = f"PostgreSQL {pg.version} and {redis_info.product} {redis_info.version}"
    load_note = f"load average {load:.2f} over the last minute when the measurements ended"
    result = Result(
        name="isolation",
        title="Per-test isolation overhead, PostgreSQL and Redis together",
        summary=" ".join(summaries),
        tables=list(tables),
        targets=[target for each in targets for target in each],
        plots=[plot],
        notes=[f"{versions}, {pg.backend} backend; {load_note}.", *NOTES],
    )
    save(result)


if __name__ == "__main__":
    main()
