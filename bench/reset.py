"""Resetting after a committed test: TRUNCATE every table, or a fresh clone of the schema,
against what the plugin's ``committed`` marker does (it picks one by the table count).

    python bench/reset.py                    # 5 to 300 tables, 40 tests each
    python bench/reset.py --tables 5 20 100 --tests 20

A committed test writes one row in each of its tables, for real; then the database is
made empty for the next test. TRUNCATE is one statement for every table. A clone drops
the database and creates it again from a pristine copy (``CREATE DATABASE ... TEMPLATE``),
which first needs every pooled connection closed; FILE_COPY (PostgreSQL 15+) copies the
files after a checkpoint, WAL_LOG (the default) writes every block through the WAL. The
plugin's reset runs through its own fixture code (``committed_session``) on a worker's
database. Each cost is the median of reset plus the next test's first query, on one
local PostgreSQL with the plugin's settings (fsync off).
"""

from __future__ import annotations

import time
from typing import Any

from harness import Result, Stat, Table, Target, parser, save
from sqlalchemy import Engine, create_engine, text

from servicematrix.config import Config
from servicematrix.isolation import committed_session
from servicematrix.provision import Worker, new_run_id
from servicematrix.reset import APPLICATION_NAME, TRUNCATE_ALL

PRISTINE, WORK, PLUGIN = "pristine", "work", "servicematrix"
# The bench's own ways: None is TRUNCATE, else the clone's CREATE DATABASE strategy.
WAYS = {"TRUNCATE": None, "clone": "WAL_LOG", "clone, FILE_COPY": "FILE_COPY"}
# Two ways within this of each other are a tie, on a machine shared with other work.
MARGIN = 1.15


def make_schema(engine: Engine, tables: int) -> None:
    with engine.begin() as conn:
        for i in range(tables):
            columns = "id serial PRIMARY KEY, name text, at timestamptz"
            conn.execute(text(f"CREATE TABLE t{i} ({columns})"))
            conn.execute(text(f"CREATE INDEX ON t{i} (name)"))


def write(conn: Any, tables: int) -> None:
    for i in range(tables):
        conn.execute(text(f"INSERT INTO t{i} (name, at) VALUES ('x', now())"))  # noqa: S608


def measure(worker: Worker, other: Worker, tables: int, tests: int) -> dict[str, Stat]:
    """Each way, interleaved: the plugin's on ``worker``'s database, the others on
    databases of their own on ``other``'s server (their admin connection would be one
    more on the worker's, which the plugin's reset leaves alone)."""
    ours = create_engine(
        worker.pg().url("postgresql+psycopg"), connect_args={"application_name": APPLICATION_NAME}
    )
    worker.give_schema(lambda: make_schema(ours, tables))
    worker.control().follow(ours)
    server = other.pg().url("postgresql+psycopg").rsplit("/", 1)[0]
    admin = create_engine(f"{server}/postgres", isolation_level="AUTOCOMMIT")

    def sql(statement: str) -> None:
        with admin.connect() as conn:
            conn.execute(text(statement))

    for name in (WORK, PRISTINE):
        sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    sql(f"CREATE DATABASE {PRISTINE}")
    make_schema(pristine := create_engine(f"{server}/{PRISTINE}"), tables)
    pristine.dispose()
    sql(f"CREATE DATABASE {WORK} TEMPLATE {PRISTINE}")
    engine = create_engine(f"{server}/{WORK}")
    names = [*WAYS, PLUGIN]
    samples: dict[str, list[float]] = {name: [] for name in names}
    for i in range(tests * len(names)):
        name = names[i % len(names)]
        if name == PLUGIN:
            with committed_session(ours, clone=worker.clone) as session:
                write(session, tables)
                session.commit()
                started = time.perf_counter()  # the rest of the block is the reset
        else:
            with engine.begin() as conn:
                write(conn, tables)
            started = time.perf_counter()
            if (strategy := WAYS[name]) is None:
                with engine.begin() as conn:
                    conn.exec_driver_sql(TRUNCATE_ALL)
            else:
                engine.dispose()
                sql(f"DROP DATABASE {WORK} WITH (FORCE)")
                sql(f"CREATE DATABASE {WORK} TEMPLATE {PRISTINE} STRATEGY {strategy}")
        with (ours if name == PLUGIN else engine).connect() as conn:  # the next test's first
            conn.execute(text("SELECT 1"))
        samples[name].append((time.perf_counter() - started) * 1000)
    for each in (engine, ours, admin):
        each.dispose()
    return {name: Stat(s, "ms") for name, s in samples.items()}


def main() -> None:
    args = parser(__doc__)
    args.add_argument("--tables", type=int, nargs="+", default=[5, 20, 50, 75, 100, 300])
    args.add_argument("--tests", type=int, default=40)
    args.add_argument("--pg", default="15")
    chosen = args.parse_args()
    config = Config.parse({"pg": chosen.pg})
    rows, targets, summary = [], [], []
    for tables in chosen.tables:
        # A worker per schema: it counts the tables once, after its schema setup.
        run = new_run_id()
        with (
            Worker(config, "local", run, "bench", roles=["pg"]) as worker,
            Worker(config, "local", run, "ways", roles=["pg"]) as other,
        ):
            stats = measure(worker, other, tables, chosen.tests)
            picked = "clone" if worker.clone is not None else "TRUNCATE"
        medians = ", ".join(f"{n} {s.median:.1f} ms" for n, s in stats.items())
        print(f"reset: {tables} tables: {medians}", flush=True)
        cheaper = min(WAYS, key=lambda n: stats[n].median)
        rows.append([str(tables), *(s.spread(1) for s in stats.values()), cheaper, picked])
        summary.append(f"{tables} tables: {cheaper} is cheaper, the plugin {picked}s")
        ours_ms, best_ms = stats[PLUGIN].median, stats[cheaper].median
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
    caption = (
        f"PostgreSQL {chosen.pg}, local backend: reset after a committed test, plus the next "
        f"test's first query; median (min-max) of {chosen.tests}"
    )
    result = Result(
        name="reset",
        title="Committed tests: TRUNCATE against a clone, and the plugin's pick",
        summary="; ".join(summary) + ".",
        tables=[Table(caption, ["tables", *WAYS, PLUGIN, "cheaper", "the plugin"], rows)],
        targets=targets,
    )
    save(result)


if __name__ == "__main__":
    main()
