"""Worker setup time with and without schema templates and warm servers: shop's suite
and 200 migrations.

    python bench/schema.py                       # local and docker, 3 rounds
    python bench/schema.py --rounds 1 --only local

Setup time is what a worker waits before its first test: both servers up, then the
schema in its database, as each worker's report gives them. Four runs per project and
backend, under -n 2: as every run is without templates (``schema_from`` unset), the
first run with templates (no template kept yet), the second (the template kept), and a
run on the servers the run before left warm (``warm``; its database is made again from
the copy taken after its setup, with no setup).
The projects: shop's repository tests (3 Alembic migrations) and a generated project
whose schema comes from 200 Alembic migrations (100 tables, each altered once more).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness import BENCH, Result, Stat, Table, save

from servicematrix.backends.docker import SCHEMA_REPOSITORY
from servicematrix.schema import templates_of

ROOT = BENCH.parent
MODES = (
    "every run, no template",
    "first run, templates",
    "second run, templates",
    "next run, templates + warm servers",
)
BACKENDS = {"local": ["--servicematrix-pg=16"], "docker": ["--servicematrix-pg=15"]}
MIGRATIONS = 200
ENV_PY = """\
from alembic import context
from sqlalchemy import create_engine

engine = create_engine(context.config.get_main_option("sqlalchemy.url"))
with engine.connect() as connection:
    context.configure(connection=connection)
    with context.begin_transaction():
        context.run_migrations()
engine.dispose()
"""
REVISION = """\
import sqlalchemy as sa
from alembic import op

revision = "{this}"
down_revision = {previous!r}


def upgrade():
    {body}
"""
CREATE = 'op.create_table("t{n}", sa.Column("id", sa.Integer, primary_key=True))'
ALTER = 'op.add_column("t{n}", sa.Column("name", sa.Text, nullable=True))'
CONFTEST = """\
import pathlib

import pytest
from alembic import command
from alembic.config import Config


@pytest.fixture(scope="session")
def servicematrix_db_setup(pg_server):
    config = Config()
    config.set_main_option("script_location", str(pathlib.Path(__file__).parent / "migrations"))
    config.set_main_option("sqlalchemy.url", pg_server.url("postgresql+psycopg"))
    command.upgrade(config, "head")
"""
TESTS = """\
import pytest
from sqlalchemy import text


@pytest.mark.parametrize("n", range(20))
def test_the_last_table(sync_db_session, n):
    assert sync_db_session.execute(text("SELECT count(name) FROM t99")).scalar() == 0
"""
INI = """\
[pytest]
addopts = -p no:cacheprovider -p no:asyncio
servicematrix_schema_from = migrations/**/*.py conftest.py
"""


def generated_project(directory: Path) -> Path:
    """A project whose schema is 200 Alembic migrations."""
    versions = directory / "migrations" / "versions"
    versions.mkdir(parents=True)
    (directory / "migrations" / "env.py").write_text(ENV_PY)
    previous = None
    for i in range(MIGRATIONS):
        body = (CREATE if i % 2 == 0 else ALTER).format(n=i // 2)
        this = f"r{i:04d}"
        (versions / f"{this}.py").write_text(
            REVISION.format(this=this, previous=previous, body=body)
        )
        previous = this
    (directory / "conftest.py").write_text(CONFTEST)
    (directory / "test_generated.py").write_text(TESTS)
    (directory / "pytest.ini").write_text(INI)
    return directory


def run(
    project: Path, args: list[str], cache: Path, report: Path, env: dict[str, str] | None = None
) -> list[float]:
    """Each worker's setup time in one pytest run."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-n",
            "2",
            "-p",
            "no:randomly",
            *args,
            f"--servicematrix-cache-dir={cache}",
            f"--servicematrix-report={report}",
        ],
        cwd=project,
        check=True,
        stdout=subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
    )
    workers = json.loads(report.read_text())["workers"]
    return [w["seconds"] + w["schema"]["seconds"] for w in workers]


def forget_templates(project: Path, cache: Path) -> None:
    """Remove the project's kept templates, local and docker, as before a first run."""
    prefix = templates_of(project)
    for kept in cache.glob(f"postgres/*/{prefix}*"):
        shutil.rmtree(kept)
    listed = subprocess.run(
        ["docker", "images", "--format", "{{.Repository}}:{{.Tag}}", SCHEMA_REPOSITORY],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.split()
    ours = [ref for ref in listed if ref.split(":")[-1].startswith(prefix)]
    if ours:
        subprocess.run(["docker", "image", "rm", *ours], check=True, stdout=subprocess.DEVNULL)


def measure(project: Path, args: list[str], backend: str, scratch: Path) -> list[list[float]]:
    """One round: per-worker setup times for each of MODES."""
    cache, report = scratch / "cache", scratch / "report.json"
    common = [f"--servicematrix-backend={backend}", *BACKENDS[backend], *args]
    without = [*common, "-o", "servicematrix_schema_from="]
    run(project, without, cache, report)  # warm-up: the cached cluster, imports, page cache
    forget_templates(project, cache)
    samples = [
        run(project, without, cache, report),
        run(project, common, cache, report),
        run(project, common, cache, report),
    ]
    # One run leaves its servers warm; the next takes them. Never under CI: run as a
    # developer does.
    warm = [*common, "--servicematrix-warm=yes"]
    try:
        run(project, warm, cache, report, env={"CI": ""})
        samples.append(run(project, warm, cache, report, env={"CI": ""}))
    finally:
        stop = [sys.executable, "-m", "servicematrix", "warm", "--stop"]
        subprocess.run([*stop, f"--servicematrix-cache-dir={cache}"], check=True)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", nargs="+", choices=list(BACKENDS), default=list(BACKENDS))
    args = parser.parse_args()
    started = time.perf_counter()
    scratch = Path(tempfile.mkdtemp(prefix="servicematrix-bench-schema-"))
    projects = {
        "shop, 3 migrations": (ROOT, ["tests/integration/test_repositories.py"]),
        f"generated, {MIGRATIONS} migrations": (generated_project(scratch / "generated"), []),
    }
    tables, summary = [], []
    try:
        for backend in args.only:
            rows = []
            for name, (project, extra) in projects.items():
                samples: list[list[float]] = [[] for _ in MODES]
                for r in range(args.rounds):
                    for mode, seconds in zip(
                        samples, measure(project, extra, backend, scratch), strict=True
                    ):
                        mode.extend(seconds)
                    print(f"schema: {backend} {name} round {r + 1}/{args.rounds}", flush=True)
                stats = [Stat(s) for s in samples]
                rows.append([name, *(f"{s.median:.2f} s ({s.min:.2f}-{s.max:.2f})" for s in stats)])
                summary.append(
                    f"{backend}, {name}: {stats[0].median:.2f} s every run, "
                    f"{stats[2].median:.2f} s once the template is kept, "
                    f"{stats[3].median:.2f} s on warm servers"
                )
            tables.append(
                Table(
                    f"{backend} backend, -n 2: worker setup time, median (min-max)",
                    ["project", *MODES],
                    rows,
                )
            )
    finally:
        for project, _ in projects.values():
            forget_templates(project, scratch / "cache")
        shutil.rmtree(scratch, ignore_errors=True)
    command = f"python bench/schema.py --rounds {args.rounds} --only {' '.join(args.only)}"
    result = Result(
        "schema",
        "Schema templates: worker setup time",
        command,
        "Per worker, servers up and schema in place; " + "; ".join(summary) + ".",
        tables,
        [],
        [],
        ["Setup time: the worker's provisioning seconds plus its schema seconds, from its report."],
    )
    save(result, time.perf_counter() - started)


if __name__ == "__main__":
    main()
