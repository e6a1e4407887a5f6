"""Wall time of the shop suite by xdist worker count, and per-test cost as a suite grows.

    .nox/integration-pg-15-redis-7/bin/python bench/scaling.py
    .nox/integration-pg-15-redis-7/bin/python bench/scaling.py --quick
    .nox/integration-pg-15-redis-7/bin/python bench/scaling.py --runs 5 --sizes 100 400 1600

Run it with the python of a virtualenv that has the project and its tests group (any
nox integration session's); pytest runs as that python's subprocess on the local backend.

Part a runs ``pytest tests/integration`` at -n 0, 1 and 2, interleaved run by run after
untimed warm-ups. A timing plugin (``-p``) records in every pytest process when it
started, loaded its plugins and conftests, collected, set up its first test and began
and ended each test, with its CPU time and the time it spent rewriting modules for
assertions; the servicematrix report adds each worker's provisioning time, and
getrusage the CPU time of every process of the run. Where PYTHONDONTWRITEBYTECODE is
set, -n 0 and -n 2 run again without it (the bytecode cache in a temporary
PYTHONPYCACHEPREFIX), so pytest keeps rewritten modules; -n 2 also runs with
``--dist worksteal``. Part b generates N tests (N/2 functions, each under both drivers)
that insert and select a row through ``db_session`` and set and get a key through
``redis_client``, runs them at -n 0 (the largest at -n 2 too), and takes the per-test
cost as the mean wall time of a test's run protocol, without the first test of each
driver (servers, schema, the driver's engine) and the last (it stops the servers).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from common import BENCH, STAT_COLUMNS, Plot, Result, Stat, Table, Target, save

REPO = BENCH.parent
SPEEDUP_TARGET = 1.6
GROWTH_TARGET = 0.10
AS_CONFIGURED = "as configured"
CACHED = "bytecode cached"
WORKSTEAL = "--dist worksteal"
TIMING_PLUGIN = '''\
"""Timestamps of one pytest process, written as JSON when it exits."""
import atexit, json, os, time
import pytest

def _started():
    # /proc has the process's start in clock ticks since boot: make it epoch time.
    with open("/proc/self/stat") as stat:
        ticks = int(stat.read().rsplit(")", 1)[1].split()[19])
    boot = time.time() - time.clock_gettime(time.CLOCK_BOOTTIME)
    return boot + ticks / os.sysconf("SC_CLK_TCK")

MARKS = {"start": _started(), "plugin": time.time()}
STATE = {"who": "main", "rewrite": None, "tests": [], "cpu": {}}

def _mark(name):
    MARKS[name] = time.time()
    STATE["cpu"][name] = time.process_time()
try:  # a private function of pytest: without it, no rewrite figure
    import _pytest.assertion.rewrite as _rewrite
    _original = _rewrite._rewrite_test
    STATE["rewrite"] = 0.0
    def _timed_rewrite(*args, **kwargs):
        began = time.perf_counter()
        try:
            return _original(*args, **kwargs)
        finally:
            STATE["rewrite"] += time.perf_counter() - began
    _rewrite._rewrite_test = _timed_rewrite
except (ImportError, AttributeError):
    pass

@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    _mark("configure")
    STATE["who"] = getattr(config, "workerinput", {}).get("workerid", "main")

@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session):
    _mark("sessionstart")

@pytest.hookimpl(trylast=True)
def pytest_collection_finish(session):
    _mark("collected")

@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item):
    began = time.time()
    yield
    STATE.setdefault("first_setup", time.time() - began)

@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    began = time.time()
    yield
    STATE["tests"].append([began, time.time()])

@atexit.register
def _write():
    _mark("exit")
    path = os.path.join(os.environ["SCALING_TIMING_DIR"], f"{os.getpid()}.json")
    with open(path, "w") as out:
        json.dump({**STATE, "marks": MARKS}, out)
'''
GENERATED_FILES = {
    "pytest.ini": """\
[pytest]
asyncio_mode = auto
asyncio_default_fixture_loop_scope = session
asyncio_default_test_loop_scope = session
filterwarnings = error
""",
    "conftest.py": '''\
import pytest
from shop.db import migrate

@pytest.fixture(scope="session")
def servicematrix_db_setup(pg_server):
    """shop's schema, as the shop suite migrates it."""
    migrate(pg_server.url("postgresql+psycopg"))
''',
}
GENERATED_HEAD = """\
import inspect
from decimal import Decimal
from sqlalchemy import insert, select
from shop.models import Item

async def settle(value):
    return await value if inspect.isawaitable(value) else value
"""
GENERATED_TEST = """
async def test_{i:05d}(db_session, redis_client):
    await settle(db_session.execute(insert(Item).values(name="n{i}", price=Decimal("{i}.5"))))
    price = await settle(db_session.scalar(select(Item.price).where(Item.name == "n{i}")))
    assert price == Decimal("{i}.5")
    await settle(redis_client.set("n{i}", "{i}"))
    assert await settle(redis_client.get("n{i}")) == b"{i}"
"""
# Phases of a run, as keys of phases() and rows of the "where the time goes" table.
PHASES = {
    "controller": "controller start-up, until it starts workers",
    "startup": "start-up until tests can run",
    "interpreter": "- of which interpreter and pytest",
    "conftest": "- of which plugins and conftests",
    "collection": "- of which collection (test modules)",
    "rewrite": "assertion rewriting, per process",
    "first": "setup of the first test (servers, schema, engines)",
    "provisioning": "- of which provisioning (report)",
    "rest": "tests after that setup",
    "work": "test time summed over workers",
    "idle": "idle at the end (uneven split)",
    "tail": "after the last test until the run ends",
    "wall": "wall",
    "cpu": "CPU, every process of the run (servers too)",
    "startup_cpu": "CPU, pytest processes until tests can run",
}


@dataclass
class Process:
    """One pytest process of a run, in seconds since the run began (CPU: since it began)."""

    who: str
    marks: dict[str, float]
    cpu: dict[str, float]
    tests: list[tuple[float, float]]
    first_setup: float
    rewrite: float | None


@dataclass
class Run:
    """One timed pytest run: wall and CPU time, its processes, per-worker provisioning."""

    wall: float
    cpu: float
    processes: list[Process]
    provisioning: list[float]

    @property
    def runners(self) -> list[Process]:
        """The processes that ran tests: the workers, or the main process at -n 0."""
        return [p for p in self.processes if p.tests]

    @property
    def tests(self) -> int:
        return sum(len(p.tests) for p in self.runners)


@dataclass
class Variant:
    """A way to run the suite; its speed-ups are against ``base``'s -n 0."""

    name: str
    env: dict[str, str]
    args: tuple[str, ...]
    modes: tuple[int, ...]
    base: str


def children_cpu() -> float:
    """User and system CPU seconds of every waited-for descendant so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_pytest(timing: Path, args: list[str], cwd: Path, env: dict[str, str]) -> Run:
    """pytest once with the timing plugin and a servers report; exit if a test fails."""
    for stale in timing.glob("[0-9]*.json"):
        stale.unlink()
    report = timing / "servers.report"
    argv = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-p", "benchtiming"]
    argv += [*args, f"--servicematrix-report={report}"]
    began, cpu = time.time(), children_cpu()
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    wall, cpu = time.time() - began, children_cpu() - cpu
    if done.returncode != 0:
        print(*(done.stdout + done.stderr).splitlines()[-60:], sep="\n")
        sys.exit(f"scaling: pytest exited with {done.returncode} ({' '.join(args)}): see above")
    processes = [load_process(path, began) for path in timing.glob("[0-9]*.json")]
    seconds = [w["seconds"] for w in json.loads(report.read_text())["workers"]]
    return Run(wall, cpu, processes, seconds)


def load_process(path: Path, began: float) -> Process:
    data = json.loads(path.read_text())
    marks = {k: v - began for k, v in data["marks"].items()}
    tests = [(a - began, b - began) for a, b in data["tests"]]
    first_setup = data.get("first_setup", 0.0)
    return Process(data["who"], marks, data["cpu"], tests, first_setup, data["rewrite"])


def variants(timing: Path, args: argparse.Namespace) -> list[Variant]:
    """As configured; where PYTHONDONTWRITEBYTECODE is set, with it unset; work stealing."""
    env = {**os.environ, "SCALING_TIMING_DIR": str(timing), "PYTHONPATH": str(timing)}
    found = [Variant(AS_CONFIGURED, env, (), tuple(args.modes), AS_CONFIGURED)]
    if args.quick:
        return found
    if os.environ.get("PYTHONDONTWRITEBYTECODE"):
        env = {k: v for k, v in env.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env["PYTHONPYCACHEPREFIX"] = str(timing / "pycache")
        found.append(Variant(CACHED, env, (), (0, 2), CACHED))
    base = found[-1].name
    steal = WORKSTEAL if base == AS_CONFIGURED else f"{base}, {WORKSTEAL}"
    return [*found, Variant(steal, env, ("--dist=worksteal",), (2,), base)]


def suite_args(args: argparse.Namespace, workers: int) -> list[str]:
    versions = [f"--servicematrix-pg={args.pg}", f"--servicematrix-redis={args.redis}"]
    return ["tests/integration", "--servicematrix-backend=local", *versions, f"-n={workers}"]


def seeded(args: argparse.Namespace) -> list[str]:
    """A fixed Hypothesis seed where Hypothesis runs, so every run does the same work."""
    if importlib.util.find_spec("hypothesis") is None:
        return []
    return [f"--hypothesis-seed={args.seed}"]


Key = tuple[str, int]  # (variant, -n)
SizeKey = tuple[int, int]  # (generated tests, -n)


def measure_modes(
    args: argparse.Namespace, timing: Path, ways: list[Variant]
) -> dict[Key, list[Run]]:
    """Part a: every variant at each of its -n values, ``args.runs`` times, interleaved."""
    for way in {w.base: w for w in ways}.values():
        print(f"scaling: warm-up run at -n 2, {way.base} (untimed)", flush=True)
        run_pytest(timing, [*suite_args(args, 2), *seeded(args), *args.pytest_args], REPO, way.env)
    runs: dict[Key, list[Run]] = {(w.name, n): [] for w in ways for n in w.modes}
    for i in range(args.runs):
        for way in ways:
            for n in way.modes:
                argv = [*suite_args(args, n), *way.args, *seeded(args), *args.pytest_args]
                run = run_pytest(timing, argv, REPO, way.env)
                runs[way.name, n].append(run)
                print(
                    f"scaling: run {i + 1}/{args.runs}, {label((way.name, n))}: "
                    f"{run.wall:.2f} s, {run.tests} tests",
                    flush=True,
                )
    return runs


def phases(run: Run) -> dict[str, float]:
    """Where one run's wall time went (keys of PHASES); across workers, the larger."""
    runners = run.runners
    main = next(p for p in run.processes if p.who == "main")
    spawned = 0.0 if main in runners else main.marks["sessionstart"]
    last_end = max(p.tests[-1][1] for p in runners)
    rewrites = [p.rewrite for p in run.processes if p.rewrite is not None]

    def longest(first: str, then: str) -> float:
        return max(p.marks[then] - p.marks[first] for p in runners)

    return {
        "controller": spawned,
        "startup": max(p.marks["collected"] for p in runners) - spawned,
        "interpreter": longest("start", "plugin"),
        "conftest": longest("plugin", "configure"),
        "collection": longest("configure", "collected"),
        "rewrite": statistics.mean(rewrites) if rewrites else 0.0,
        "first": max(p.first_setup for p in runners),
        "provisioning": statistics.mean(run.provisioning or [0.0]),
        "rest": max(p.tests[-1][1] - p.tests[0][0] - p.first_setup for p in runners),
        "work": sum(b - a for p in runners for a, b in p.tests),
        "idle": last_end - min(p.tests[-1][1] for p in runners),
        "tail": run.wall - last_end,
        "wall": run.wall,
        "cpu": run.cpu,
        "startup_cpu": sum(
            p.cpu["collected" if p.tests else "sessionstart"] for p in run.processes
        ),
    }


def median_phases(runs: list[Run]) -> dict[str, float]:
    each = [phases(run) for run in runs]
    return {key: statistics.median(p[key] for p in each) for key in PHASES}


def generate_suite(root: Path, size: int) -> None:
    """A fresh test directory of ``size`` tests: ``size // 2`` functions, both drivers."""
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir()
    for name, text in GENERATED_FILES.items():
        (root / name).write_text(text)
    body = "".join(GENERATED_TEST.format(i=i) for i in range(size // 2))
    (root / "test_generated.py").write_text(GENERATED_HEAD + body)


def measure_sizes(args: argparse.Namespace, timing: Path, way: Variant) -> dict[SizeKey, list[Run]]:
    """Part b: each generated size at -n 0, the largest at -n 2 too, interleaved."""
    plan = [(size, 0) for size in args.sizes] + [(max(args.sizes), 2)]
    for size in args.sizes:
        generate_suite(timing / f"generated-{size}", size)
    runs: dict[SizeKey, list[Run]] = {key: [] for key in plan}
    for i in range(args.runs):
        for size, n in plan:
            suite = timing / f"generated-{size}"
            run = run_pytest(timing, suite_args(args, n)[1:], suite, way.env)
            runs[size, n].append(run)
            print(
                f"scaling: run {i + 1}/{args.runs}, {size} tests, -n {n}: {run.wall:.2f} s",
                flush=True,
            )
    return runs


def per_test_ms(run: Run) -> list[float]:
    """Each test's protocol wall time in ms, but the first of each driver and the last."""
    # The first test of a driver makes its engine and client (the very first one also
    # provisions and migrates); the last one stops the servers.
    (only,) = run.runners
    return [(b - a) * 1000 for a, b in only.tests[2:-1]]


def walls(runs: list[Run]) -> Stat:
    return Stat([run.wall for run in runs])


def label(key: Key) -> str:
    name, n = key
    return f"-n {n}" if name == AS_CONFIGURED else f"-n {n}, {name}"


def speedup(runs: dict[Key, list[Run]], key: Key, base: str) -> float:
    return walls(runs[base, 0]).median / walls(runs[key]).median


def modes_tables(runs: dict[Key, list[Run]], ways: list[Variant]) -> list[Table]:
    table = Table("shop suite, wall time by worker count", ["mode", *STAT_COLUMNS, "speed-up"])
    for way in ways:
        for n in way.modes:
            key = (way.name, n)
            rate = f"{speedup(runs, key, way.base):.2f}x" if (way.base, 0) in runs else "n/a"
            table.rows.append([label(key), *walls(runs[key]).cells(2), rate])
    by_mode = {key: median_phases(samples) for key, samples in runs.items()}
    where = Table(
        "where the time goes, seconds (median of runs; across workers, the larger)",
        ["phase", *(label(key) for key in runs)],
    )
    for phase, name in PHASES.items():
        where.rows.append([name, *(f"{by_mode[key][phase]:.2f}" for key in runs)])
    return [table, where]


def speedup_why(runs: dict[Key, list[Run]], ways: list[Variant]) -> str:
    """Why -n 2 falls short, from the measured phases."""
    zero, two = (median_phases(runs[AS_CONFIGURED, n]) for n in (0, 2))
    cores = os.cpu_count() or 1
    testing = [p["first"] + p["rest"] for p in (zero, two)]
    why = (
        f"before its first test -n 2 spends {two['controller']:.1f} s in the controller and "
        f"{two['startup']:.1f} s starting workers, against {zero['startup']:.1f} s for the "
        f"one process at -n 0 (each process rewrites modules for assertions for "
        f"{two['rewrite']:.1f} s); the tests take {testing[0]:.1f} s at -n 0 and "
        f"{testing[1]:.1f} s at -n 2, a worker idling {two['idle']:.1f} s at the end; "
        f"the run takes {two['cpu']:.1f} CPU-seconds against {zero['cpu']:.1f} at -n 0, so "
        f"on {cores} cores it cannot take less than {two['cpu'] / cores:.1f} s"
    )
    others = [(w, (w.name, 2)) for w in ways if w.name != AS_CONFIGURED and 2 in w.modes]
    rates = [f"{w.name}: {speedup(runs, key, w.base):.2f}x" for w, key in others]
    return why + (f". -n 2 against -n 0 when {'; '.join(rates)}" if rates else "")


def speedup_target(runs: dict[Key, list[Run]], ways: list[Variant]) -> Target:
    zero, two = walls(runs[AS_CONFIGURED, 0]).median, walls(runs[AS_CONFIGURED, 2]).median
    met = zero / two >= SPEEDUP_TARGET
    return Target(
        "shop suite, -n 2 against -n 0 (local backend)",
        f">= {SPEEDUP_TARGET}x faster",
        f"{zero / two:.2f}x ({zero:.2f} s -> {two:.2f} s)",
        met,
        "" if met else speedup_why(runs, ways),
    )


def sizes_tables(runs: dict[SizeKey, list[Run]]) -> tuple[list[Table], dict[int, float]]:
    """Per-test cost by generated size, and the largest size at -n 0 against -n 2."""
    sizes = sorted(size for size, n in runs if n == 0)
    base_wall = walls(runs[sizes[0], 0]).median
    means = {
        s: statistics.median(statistics.mean(per_test_ms(r)) for r in runs[s, 0]) for s in sizes
    }
    cost = Table(
        "generated suites at -n 0: per-test cost (median of runs)",
        ["tests", "mean per test", "median per test", "marginal from wall", "wall", "vs smallest"],
    )
    for size in sizes:
        samples = runs[size, 0]
        median = statistics.median(statistics.median(per_test_ms(r)) for r in samples)
        wall = walls(samples).median
        marginal = (
            f"{(wall - base_wall) / (size - sizes[0]) * 1000:.2f} ms" if size > sizes[0] else "-"
        )
        growth = f"{(means[size] / means[sizes[0]] - 1) * 100:+.1f} %"
        row = [str(size), f"{means[size]:.2f} ms", f"{median:.2f} ms", marginal, f"{wall:.2f} s"]
        cost.rows.append([*row, growth])
    largest = sizes[-1]
    workers = Table(
        f"generated suite of {largest} tests by worker count", ["mode", *STAT_COLUMNS, "speed-up"]
    )
    for n in (0, 2):
        rate = walls(runs[largest, 0]).median / walls(runs[largest, n]).median
        workers.rows.append([f"-n {n}", *walls(runs[largest, n]).cells(2), f"{rate:.2f}x"])
    return [cost, workers], means


def growth_target(means: dict[int, float]) -> Target:
    small, large = min(means), max(means)
    growth = means[large] / means[small] - 1
    met = abs(growth) <= GROWTH_TARGET
    return Target(
        f"per-test cost at {large} tests against {small}",
        f"within {GROWTH_TARGET:.0%}",
        f"{growth:+.1%} ({means[small]:.2f} ms -> {means[large]:.2f} ms)",
        met,
        "" if met else "the mean per test changes with the suite's size; see the per-test table",
    )


def plots(modes: dict[Key, list[Run]], means: dict[int, float]) -> list[Plot]:
    bars = {
        "wall": [
            [label(key), s.median, s.min, s.max]
            for key, s in ((k, walls(r)) for k, r in modes.items())
        ]
    }
    cost = {"mean per test": [[n, ms] for n, ms in means.items()]}
    return [
        Plot(
            "scaling.png",
            "Per-test cost as the suite grows (-n 0)",
            "tests in the suite",
            "ms per test (mean)",
            "line",
            cost,
        ),
        Plot(
            "workers.png",
            "shop suite wall time by xdist workers",
            "",
            "seconds (median, min-max)",
            "bar",
            bars,
        ),
    ]


def notes(args: argparse.Namespace) -> list[str]:
    bytecode = (
        "set here, so pytest cannot keep modules it rewrites for assertions: every process "
        "rewrites the test modules, conftests and every plugin distribution's whole package "
        "(faker, anyio, hypothesis, schemathesis, ...) again; the 'bytecode cached' rows unset "
        "it, with the cache in a temporary PYTHONPYCACHEPREFIX filled by a warm-up run"
        if os.environ.get("PYTHONDONTWRITEBYTECODE")
        else "unset: pytest keeps rewritten modules between runs"
    )
    return [
        f"Local backend, PostgreSQL {args.pg} and Redis {args.redis}; {args.runs} runs of each, "
        f"interleaved, after untimed warm-ups; load average {os.getloadavg()[0]:.2f} at the end.",
        f"PYTHONDONTWRITEBYTECODE is {bytecode}.",
        "Per-test cost: mean wall time of pytest_runtest_protocol (setup, call, teardown) "
        "without the first test of each driver (servers, migrations, the driver's engine and "
        "client) and the last (servers stopped); 'marginal from wall' is "
        "(wall(N) - wall(smallest)) / (N - smallest).",
        f"Hypothesis runs with the fixed seed {args.seed} (--seed), so every run of the suite "
        "does the same work.",
        "Generated tests: N/2 functions under both drivers, each inserting and selecting a row "
        "through db_session and setting and getting a key through redis_client.",
    ]


def build_result(
    args: argparse.Namespace,
    ways: list[Variant],
    modes: dict[Key, list[Run]],
    sizes: dict[SizeKey, list[Run]],
) -> Result:
    size_tables, means = sizes_tables(sizes)
    targets = [growth_target(means)]
    if {(AS_CONFIGURED, 0), (AS_CONFIGURED, 2)} <= modes.keys():
        targets.insert(0, speedup_target(modes, ways))
    tests = next(iter(modes.values()))[0].tests
    medians = "; ".join(f"{label(key)} {walls(r).median:.2f} s" for key, r in modes.items())
    return Result(
        "scaling",
        "Scaling: xdist workers and suite size",
        f"python bench/scaling.py --pg {args.pg} --redis {args.redis} --runs {args.runs} "
        f"--seed {args.seed}",
        f"shop suite ({tests} tests), median wall: {medians}.",
        [*modes_tables(modes, ways), *size_tables],
        targets,
        plots(modes, means),
        notes(args),
    )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pg", default="15", help="PostgreSQL major version")
    parser.add_argument("--redis", default="7", help="Redis version, e.g. 7 or valkey-8")
    parser.add_argument("--runs", type=int, default=3, help="timed runs of each mode and size")
    parser.add_argument("--modes", type=int, nargs="+", default=[0, 1, 2], help="-n values")
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 400, 1600])
    parser.add_argument("--seed", type=int, default=1, help="Hypothesis seed of the suite runs")
    parser.add_argument(
        "--pytest-arg",
        dest="pytest_args",
        action="append",
        default=[],
        help="one more pytest argument for the shop suite runs (repeatable)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="one run of -n 0 and -n 2 as configured, small sizes"
    )
    args = parser.parse_args()
    if args.quick:
        args.runs, args.modes, args.sizes = 1, [0, 2], [20, 60]
    return args


def check_environment() -> None:
    """The project and pytest-xdist in this python, or exit with one line."""
    for module in ("servicematrix", "shop", "xdist"):
        if importlib.util.find_spec(module) is None:
            sys.exit(
                f"scaling: {module} is not installed in {sys.executable}: run this with a nox "
                "integration session's python, e.g. .nox/integration-pg-15-redis-7/bin/python"
            )


def main() -> None:
    args = parse_args()
    check_environment()
    started = time.perf_counter()
    timing = Path(tempfile.mkdtemp(prefix="servicematrix-scaling-"))
    try:
        (timing / "benchtiming.py").write_text(TIMING_PLUGIN)
        ways = variants(timing, args)
        modes = measure_modes(args, timing, ways)
        sizes = measure_sizes(args, timing, ways[0])
    finally:
        shutil.rmtree(timing, ignore_errors=True)
    save(build_result(args, ways, modes, sizes), time.perf_counter() - started)


if __name__ == "__main__":
    main()
