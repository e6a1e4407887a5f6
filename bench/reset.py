"""Resetting after a committed test: TRUNCATE every table, or a fresh clone of the schema,
against what the plugin's ``committed`` marker does (it picks one by the table count).

    python bench/reset.py                    # 5 and 100 tables, 40 tests each
    python bench/reset.py --tables 5 20 100 --tests 20

A committed test writes for real (one row in each of its tables), then the database is
made empty again for the next test. TRUNCATE is one statement for every table. A clone
drops the test's database and creates it again from a pristine copy of the schema
(``CREATE DATABASE ... TEMPLATE``), which first needs every pooled connection closed;
the next test's first connection is part of its cost. The plugin's reset runs through
its own fixture code (``committed_session``) on a worker's database set up by the
worker. Each cost is the median over the tests of reset plus the next test's first
query, on one local PostgreSQL with the plugin's settings (fsync off).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

from harness import Result, Stat, Table, Target, save
from sqlalchemy import Engine, create_engine, text

from servicematrix.config import Config
from servicematrix.isolation import committed_session
from servicematrix.provision import Worker, new_run_id
from servicematrix.reset import APPLICATION_NAME, TRUNCATE_ALL

PRISTINE = "pristine"
WORK = "work"


def make_schema(engine: Engine, tables: int) -> None:
    with engine.begin() as conn:
        for i in range(tables):
            conn.execute(
                text(f"CREATE TABLE t{i} (id serial PRIMARY KEY, name text, at timestamptz)")
            )
            conn.execute(text(f"CREATE INDEX ON t{i} (name)"))


def committed_test(engine: Engine, tables: int) -> None:
    with engine.begin() as conn:
        write(conn, tables)


def write(conn: Any, tables: int) -> None:
    for i in range(tables):
        conn.execute(text(f"INSERT INTO t{i} (name, at) VALUES ('x', now())"))  # noqa: S608


def admin(url: str) -> Callable[[str], None]:
    """Run one statement outside a transaction, on the server's maintenance database."""
    engine = create_engine(url.rsplit("/", 1)[0] + "/postgres", isolation_level="AUTOCOMMIT")

    def run(statement: str) -> None:
        with engine.connect() as conn:
            conn.execute(text(statement))

    return run


def truncate(engine: Engine, _sql: Callable[[str], None]) -> None:
    with engine.begin() as conn:
        conn.exec_driver_sql(TRUNCATE_ALL)


def clone(engine: Engine, sql: Callable[[str], None]) -> None:
    engine.dispose()
    sql(f"DROP DATABASE {WORK} WITH (FORCE)")
    sql(f"CREATE DATABASE {WORK} TEMPLATE {PRISTINE}")


def clone_file_copy(engine: Engine, sql: Callable[[str], None]) -> None:
    engine.dispose()
    sql(f"DROP DATABASE {WORK} WITH (FORCE)")
    sql(f"CREATE DATABASE {WORK} TEMPLATE {PRISTINE} STRATEGY FILE_COPY")


# FILE_COPY (PostgreSQL 15+) copies the files after a checkpoint; WAL_LOG, the default,
# writes every block through the WAL.
STRATEGIES = {"TRUNCATE": truncate, "clone": clone, "clone, FILE_COPY": clone_file_copy}
PLUGIN = "servicematrix"
# Two ways within this of each other are a tie, on a machine shared with other work.
MARGIN = 1.15


def measure(worker: Worker, other: Worker, tables: int, tests: int) -> dict[str, Stat]:
    """Each way, interleaved: the plugin's on ``worker``'s database, the others on
    databases of their own on ``other``'s server (their admin connection would be one
    more on the worker's, which the plugin's reset leaves alone)."""
    url = worker.pg().url("postgresql+psycopg")
    ours = create_engine(url, connect_args={"application_name": APPLICATION_NAME})
    worker.give_schema(lambda: make_schema(ours, tables))
    worker.control().follow(ours)
    base_url = other.pg().url("postgresql+psycopg")
    sql = admin(base_url)
    for name in (WORK, PRISTINE):
        sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    sql(f"CREATE DATABASE {PRISTINE}")
    pristine = create_engine(base_url.rsplit("/", 1)[0] + f"/{PRISTINE}")
    make_schema(pristine, tables)
    pristine.dispose()
    sql(f"CREATE DATABASE {WORK} TEMPLATE {PRISTINE}")
    engine = create_engine(base_url.rsplit("/", 1)[0] + f"/{WORK}")
    names = [*STRATEGIES, PLUGIN]
    samples: dict[str, list[float]] = {name: [] for name in names}
    for i in range(tests * len(names)):
        name = names[i % len(names)]
        if name == PLUGIN:
            with committed_session(ours, clone=worker.clone) as session:
                write(session, tables)
                session.commit()
                started = time.perf_counter()  # the rest of the block is the reset
            used = ours
        else:
            committed_test(engine, tables)
            started = time.perf_counter()
            STRATEGIES[name](engine, sql)
            used = engine
        with used.connect() as conn:  # the next test's first round trip
            conn.execute(text("SELECT 1"))
        samples[name].append((time.perf_counter() - started) * 1000)
    engine.dispose()
    ours.dispose()
    return {name: Stat(s, "ms") for name, s in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tables", type=int, nargs="+", default=[5, 100])
    parser.add_argument("--tests", type=int, default=40)
    parser.add_argument("--pg", default="15")
    args = parser.parse_args()
    started = time.perf_counter()
    config = Config.parse({"pg": args.pg})
    rows, targets, summary = [], [], []
    for tables in args.tables:
        # A worker per schema: it counts the tables once, after its schema setup.
        run = new_run_id()
        with (
            Worker(config, "local", run, "bench", roles=["pg"]) as worker,
            Worker(config, "local", run, "ways", roles=["pg"]) as other,
        ):
            stats = measure(worker, other, tables, args.tests)
            print(
                f"reset: {tables} tables: "
                + ", ".join(f"{n} {s.median:.1f} ms" for n, s in stats.items()),
                flush=True,
            )
            picked = "clone" if worker.clone is not None else "TRUNCATE"
            ways = {n: s for n, s in stats.items() if n != PLUGIN}
            cheaper = min(ways, key=lambda n: ways[n].median)
        rows.append(
            [
                str(tables),
                *(f"{s.median:.1f} ms ({s.min:.1f}-{s.max:.1f})" for s in stats.values()),
                cheaper,
                picked,
            ]
        )
        summary.append(f"{tables} tables: {cheaper} is cheaper, the plugin {picked}s")
        ours_ms, best_ms = stats[PLUGIN].median, ways[cheaper].median
        met = ours_ms <= best_ms * MARGIN
        targets.append(
            Target(
                f"{tables} tables: the plugin's committed reset against the cheaper way",
                f"<= {MARGIN}x",
                f"{ours_ms:.1f} against {best_ms:.1f} ms ({cheaper}; the plugin {picked}s)",
                met,
                "" if met else f"the plugin {picked}s where {cheaper} is cheaper",
            )
        )
    table = Table(
        f"PostgreSQL {args.pg}, local backend: reset after a committed test, plus the next "
        f"test's first query; median (min-max) of {args.tests}",
        ["tables", *STRATEGIES, PLUGIN, "cheaper", "the plugin"],
        rows,
    )
    sizes = " ".join(map(str, args.tables))
    command = f"python bench/reset.py --tables {sizes} --tests {args.tests} --pg {args.pg}"
    save(
        Result(
            "reset",
            "Committed tests: TRUNCATE against a clone, and the plugin's pick",
            command,
            "; ".join(summary) + ".",
            [table],
            targets,
        ),
        time.perf_counter() - started,
    )


if __name__ == "__main__":
    main()
