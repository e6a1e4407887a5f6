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
shuffled, interleaved rounds after a warm-up, so drift hits them all alike.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shlex
import statistics
import sys
import time
from dataclasses import replace
from typing import Any

import redis
import redis.asyncio
from common import Plot, Result, Stat, Table, Target, save
from isolation_strategies import (
    BASELINE,
    DRIVERS,
    OURS,
    SCHEMES,
    SLOW,
    STRATEGIES,
    SYNC,
    AsyncLane,
    Lane,
    Samples,
    SyncLane,
    check,
    time_async,
    time_sync,
)
from sqlalchemy import create_engine, func, inspect, select, text
from sqlalchemy.ext.asyncio import create_async_engine

from servicematrix.backends import select_backend
from servicematrix.config import Config
from servicematrix.errors import ServiceMatrixError
from servicematrix.info import ServerInfo
from servicematrix.provision import Worker, new_run_id
from shop.db import migrate
from shop.models import Base

LABELS = {"sync": "psycopg 3 + redis-py", "async": "asyncpg + redis.asyncio"}
TARGET_MS = 1.0
TARGET_RATIO = 10.0


def schedule(counts: dict[str, int], seed: int) -> list[list[str]]:
    """Rounds of strategy names: each in ``counts[name]`` rounds spread evenly, shuffled."""
    rng = random.Random(seed)  # noqa: S311 - orders rounds, guards no secret
    rounds = max(counts.values())
    plan = []
    for r in range(rounds):
        here = [n for n, c in counts.items() if (r + 1) * c // rounds > r * c // rounds]
        rng.shuffle(here)
        plan.append(here)
    return plan


def progress(driver: str, phase: str, r: int, plan: list[list[str]]) -> None:
    if (r + 1) % 50 == 0 or r + 1 == len(plan):
        print(f"  {driver} {phase}: round {r + 1}/{len(plan)}", flush=True)


def prepare(pg: ServerInfo, driver: str) -> dict[str, ServerInfo]:
    """A migrated database per lane; the template strategy's one is its template."""
    admin = create_engine(pg.url(SCHEMES["sync"]), isolation_level="AUTOCOMMIT")
    infos = {}
    try:
        for i, name in enumerate((BASELINE, *STRATEGIES)):
            info = replace(pg, database=f"{driver}_{i}")
            with admin.connect() as connection:
                connection.exec_driver_sql(f"CREATE DATABASE {info.database}")
            migrate(info.url(SCHEMES["sync"]))
            infos[name] = info
    finally:
        admin.dispose()
    # Its tests start with create_all.
    engine = create_engine(infos["drop_all/create_all"].url(SCHEMES["sync"]))
    Base.metadata.drop_all(engine)
    engine.dispose()
    return infos


def engine_args(pg: ServerInfo, name: str, info: ServerInfo, driver: str) -> dict[str, Any]:
    """The template strategy's engine runs CREATE and DROP DATABASE on the server's own."""
    if name == "template database":
        return {"url": pg.url(SCHEMES[driver]), "isolation_level": "AUTOCOMMIT"}
    return {"url": info.url(SCHEMES[driver])}


def redis_url(redis_info: ServerInfo, driver: str, index: int) -> str:
    """Each lane of each driver gets its own Redis database."""
    return replace(redis_info, database=str(DRIVERS.index(driver) * len(SYNC) + index)).url()


Plans = dict[str, list[list[str]]]


def measure_sync(
    pg: ServerInfo, redis_info: ServerInfo, infos: dict[str, ServerInfo], plans: Plans
) -> dict[str, Samples]:
    """Run the plans' rounds with psycopg and redis-py; the samples of the last plan."""
    lanes: dict[str, SyncLane] = {
        name: Lane(
            info,
            create_engine(**engine_args(pg, name, info, "sync")),
            redis.Redis.from_url(redis_url(redis_info, "sync", i)),
            flush=name != BASELINE,
        )
        for i, (name, info) in enumerate(infos.items())
    }
    samples: dict[str, Samples] = {}
    try:
        for phase, plan in plans.items():
            samples = {name: Samples() for name in lanes}
            for r, names in enumerate(plan):
                for name in names:
                    time_sync(name, lanes[name], samples[name])
                progress("sync", phase, r, plan)
        return samples
    finally:
        for lane in lanes.values():
            lane.engine.dispose()
            lane.redis.close()


async def measure_async(
    pg: ServerInfo, redis_info: ServerInfo, infos: dict[str, ServerInfo], plans: Plans
) -> dict[str, Samples]:
    """Run the plans' rounds with asyncpg and redis.asyncio; the samples of the last plan."""
    lanes: dict[str, AsyncLane] = {
        name: Lane(
            info,
            create_async_engine(**engine_args(pg, name, info, "async")),
            redis.asyncio.Redis.from_url(redis_url(redis_info, "async", i)),
            flush=name != BASELINE,
        )
        for i, (name, info) in enumerate(infos.items())
    }
    samples: dict[str, Samples] = {}
    try:
        for phase, plan in plans.items():
            samples = {name: Samples() for name in lanes}
            for r, names in enumerate(plan):
                for name in names:
                    await time_async(name, lanes[name], samples[name])
                progress("async", phase, r, plan)
        return samples
    finally:
        for lane in lanes.values():
            await lane.engine.dispose()
            await lane.redis.aclose()


CLONES_LEFT = text("SELECT count(*) FROM pg_database WHERE left(datname, 2) = 't_'")


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


def verify(
    redis_info: ServerInfo, driver: str, infos: dict[str, ServerInfo], baseline_runs: int
) -> None:
    """The work committed for real, and every strategy left no row, key or database behind."""
    for i, (name, info) in enumerate(infos.items()):
        rows, clones = rows_and_clones(info)
        expected = 3 * baseline_runs if name == BASELINE else 0
        check(rows == expected, f"{driver} {name}: {rows} rows left, {expected} expected")
        check(clones == 0, f"{driver}: {clones} cloned databases left")
        with redis.Redis.from_url(redis_url(redis_info, driver, i)) as client:
            keys = int(client.dbsize())
        check(name == BASELINE or keys == 0, f"{driver} {name}: {keys} Redis keys left")


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


def measure(
    driver: str, pg: ServerInfo, redis_info: ServerInfo, args: argparse.Namespace
) -> dict[str, Samples]:
    """Warm up, then measure every strategy of one driver in shuffled interleaved rounds."""
    counts = {name: args.slow_tests if name in SLOW else args.tests for name in SYNC}
    plans: Plans = {
        "warm-up": schedule({n: min(c, args.warmup) for n, c in counts.items()}, args.seed + 1),
        "measured": schedule(counts, args.seed),
    }
    print(f"{LABELS[driver]}: {len(plans['measured'])} rounds after {args.warmup}", flush=True)
    infos = prepare(pg, driver)
    if driver == "sync":
        samples = measure_sync(pg, redis_info, infos, plans)
    else:
        samples = asyncio.run(measure_async(pg, redis_info, infos, plans))
    runs = sum(names.count(BASELINE) for plan in plans.values() for names in plan)
    verify(redis_info, driver, infos, runs)
    for name in (BASELINE, *STRATEGIES):
        print(f"  {name}: median {statistics.median(samples[name].total):.3f} ms per test")
    return samples


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
