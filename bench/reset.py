"""Resetting after a committed test: TRUNCATE every table, or a fresh clone of the schema.

    python bench/reset.py                    # 5 and 100 tables, 40 tests each
    python bench/reset.py --tables 5 20 100 --tests 20

A committed test writes for real (one row in each of its tables), then the database is
made empty again for the next test. TRUNCATE is what the ``committed`` marker does
(one statement for every table). A clone drops the test's database and creates it
again from a pristine copy of the schema (``CREATE DATABASE ... TEMPLATE``), which
first needs every pooled connection closed; the next test's first connection is part
of its cost. Each cost is the median over the tests of reset plus that reconnect, on
one local PostgreSQL with the plugin's settings (fsync off).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from common import Result, Stat, Table, Target, save
from sqlalchemy import Engine, create_engine, text

from servicematrix.config import Config
from servicematrix.provision import Worker, new_run_id
from servicematrix.reset import TRUNCATE_ALL

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


def measure(base_url: str, tables: int, tests: int) -> dict[str, Stat]:
    sql = admin(base_url)
    for name in (WORK, PRISTINE):
        sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    sql(f"CREATE DATABASE {PRISTINE}")
    pristine = create_engine(base_url.rsplit("/", 1)[0] + f"/{PRISTINE}")
    make_schema(pristine, tables)
    pristine.dispose()
    sql(f"CREATE DATABASE {WORK} TEMPLATE {PRISTINE}")
    engine = create_engine(base_url.rsplit("/", 1)[0] + f"/{WORK}")
    samples: dict[str, list[float]] = {name: [] for name in STRATEGIES}
    for i in range(tests * len(STRATEGIES)):
        name = list(STRATEGIES)[i % len(STRATEGIES)]  # interleaved
        committed_test(engine, tables)
        started = time.perf_counter()
        STRATEGIES[name](engine, sql)
        with engine.connect() as conn:  # the next test's first round trip
            conn.execute(text("SELECT 1"))
        samples[name].append((time.perf_counter() - started) * 1000)
    engine.dispose()
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
    with Worker(config, "local", new_run_id(), "bench", roles=["pg"]) as worker:
        url = worker.pg().url("postgresql+psycopg")
        for tables in args.tables:
            stats = measure(url, tables, args.tests)
            print(
                f"reset: {tables} tables: "
                + ", ".join(f"{n} {s.median:.1f} ms" for n, s in stats.items()),
                flush=True,
            )
            cheaper = min(stats, key=lambda n: stats[n].median)
            rows.append(
                [
                    str(tables),
                    *(f"{s.median:.1f} ms ({s.min:.1f}-{s.max:.1f})" for s in stats.values()),
                    cheaper,
                ]
            )
            summary.append(f"{tables} tables: {cheaper} is cheaper")
            truncate_ms = stats["TRUNCATE"].median
            clone_ms = min(stats["clone"].median, stats["clone, FILE_COPY"].median)
            targets.append(
                Target(
                    f"{tables} tables: the plugin's reset (TRUNCATE) against a clone",
                    "the cheaper one",
                    f"{truncate_ms:.1f} against {clone_ms:.1f} ms",
                    truncate_ms <= clone_ms,
                    ""
                    if truncate_ms <= clone_ms
                    else "a clone is cheaper here; committed tests still TRUNCATE",
                )
            )
    table = Table(
        f"PostgreSQL {args.pg}, local backend: reset after a committed test, plus the next "
        f"test's first query; median (min-max) of {args.tests}",
        ["tables", *STRATEGIES, "cheaper"],
        rows,
    )
    sizes = " ".join(map(str, args.tables))
    command = f"python bench/reset.py --tables {sizes} --tests {args.tests} --pg {args.pg}"
    save(
        Result(
            "reset",
            "Committed tests: TRUNCATE against a clone",
            command,
            "; ".join(summary) + ".",
            [table],
            targets,
        ),
        time.perf_counter() - started,
    )


if __name__ == "__main__":
    main()
