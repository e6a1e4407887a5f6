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
The projects: shop's repository tests (3 Alembic migrations) and bench/projects/
many_migrations, whose schema comes from 200 Alembic migrations (100 tables, each
altered once more): a scratch copy of it, its one revision module copied to 200 names.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from harness import ROOT, Result, Stat, Table, parser, save

from servicematrix.backends.docker import SCHEMA_REPOSITORY
from servicematrix.schema import templates_of

MODES = (
    "every run, no template",
    "first run, templates",
    "second run, templates",
    "next run, templates + warm servers",
)
BACKENDS = {"local": ["--servicematrix-pg=16"], "docker": ["--servicematrix-pg=15"]}
MIGRATIONS = 200
PROJECT = ROOT / "bench" / "projects" / "many_migrations"
TITLE = "Schema templates: worker setup time"
NOTE = "Setup time: the worker's provisioning seconds plus its schema seconds, from its report."


def generated_project(directory: Path) -> Path:
    """A copy of PROJECT, its revision module copied to migrations/versions/r0000.py ..."""
    shutil.copytree(PROJECT, directory, ignore=shutil.ignore_patterns("__pycache__"))
    migrations = directory / "migrations"
    (migrations / "versions").mkdir()
    for i in range(MIGRATIONS):
        shutil.copyfile(migrations / "revision.py", migrations / "versions" / f"r{i:04d}.py")
    return directory


def run(project: Path, args: list[str], scratch: Path, **env: str) -> list[float]:
    """Each worker's setup time in one pytest run, with ``env`` added to the environment."""
    cache, report = scratch / "cache", scratch / "report.json"
    command = [sys.executable, "-m", "pytest", "-q", "-n", "2", "-p", "no:randomly", *args]
    command += [f"--servicematrix-cache-dir={cache}", f"--servicematrix-report={report}"]
    environment = os.environ | env
    subprocess.run(command, cwd=project, check=True, stdout=subprocess.DEVNULL, env=environment)
    workers = json.loads(report.read_text())["workers"]
    return [w["seconds"] + w["schema"]["seconds"] for w in workers]


def forget_templates(project: Path, cache: Path) -> None:
    """Remove the project's kept templates, local and docker, as before a first run."""
    prefix = templates_of(project)
    for kept in cache.glob(f"postgres/*/{prefix}*"):
        shutil.rmtree(kept)
    images = ["docker", "images", "--format", "{{.Repository}}:{{.Tag}}", SCHEMA_REPOSITORY]
    listed = subprocess.run(images, capture_output=True, text=True, check=False).stdout.split()
    ours = [ref for ref in listed if ref.split(":")[-1].startswith(prefix)]
    if ours:
        subprocess.run(["docker", "image", "rm", *ours], check=True, stdout=subprocess.DEVNULL)


def measure(project: Path, args: list[str], backend: str, scratch: Path) -> list[list[float]]:
    """One round: per-worker setup times for each of MODES."""
    common = [f"--servicematrix-backend={backend}", *BACKENDS[backend], *args]
    without = [*common, "-o", "servicematrix_schema_from="]
    run(project, without, scratch)  # warm-up: the cached cluster, imports, page cache
    forget_templates(project, scratch / "cache")
    samples = [run(project, each, scratch) for each in (without, common, common)]
    # One run leaves its servers warm; the next takes them. Never under CI: as a developer.
    warm = [*common, "--servicematrix-warm=yes"]
    try:
        run(project, warm, scratch, CI="")
        samples.append(run(project, warm, scratch, CI=""))
    finally:
        stop = [sys.executable, "-m", "servicematrix", "warm", "--stop"]
        subprocess.run([*stop, f"--servicematrix-cache-dir={scratch / 'cache'}"], check=True)
    return samples


def main() -> None:
    cli = parser(__doc__)
    cli.add_argument("--rounds", type=int, default=3)
    cli.add_argument("--only", nargs="+", choices=list(BACKENDS), default=list(BACKENDS))
    args = cli.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="servicematrix-bench-schema-"))
    projects = {
        "shop, 3 migrations": (ROOT, ["tests/integration/test_repositories.py"]),
        f"generated, {MIGRATIONS} migrations": (generated_project(scratch / PROJECT.name), []),
    }
    tables, summary = [], []
    try:
        for backend in args.only:
            rows = []
            for name, (project, extra) in projects.items():
                samples: list[list[float]] = [[] for _ in MODES]
                for r in range(args.rounds):
                    measured = measure(project, extra, backend, scratch)
                    for mode, seconds in zip(samples, measured, strict=True):
                        mode.extend(seconds)
                    print(f"schema: {backend} {name} round {r + 1}/{args.rounds}", flush=True)
                stats = [Stat(s) for s in samples]
                rows.append([name, *(s.spread() for s in stats)])
                summary.append(
                    f"{backend}, {name}: {stats[0].median:.2f} s every run, "
                    f"{stats[2].median:.2f} s once the template is kept, "
                    f"{stats[3].median:.2f} s on warm servers"
                )
            caption = f"{backend} backend, -n 2: worker setup time, median (min-max)"
            tables.append(Table(caption, ["project", *MODES], rows))
    finally:
        for project, _ in projects.values():
            forget_templates(project, scratch / "cache")
        shutil.rmtree(scratch, ignore_errors=True)
    summary_line = "Per worker, servers up and schema in place; " + "; ".join(summary) + "."
    save(Result(name="schema", title=TITLE, summary=summary_line, tables=tables, notes=[NOTE]))


if __name__ == "__main__":
    main()
