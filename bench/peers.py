"""One workload under servicematrix and under the tools projects use instead, side by side.

    python bench/peers.py                            # 3 rounds, N = 200 and 1000, -n 0 and 2
    python bench/peers.py --rounds 1 --sizes 50 200 --only servicematrix-local testcontainers

The workload (``bench/workload``): N tests, each asserting that it starts from empty
tables and an empty Redis, inserting a user, an item and an order, joining them back,
and a Redis SET/GET. Each tool runs it with its own fixtures, in a venv of its own that
holds the same pinned pytest, xdist, SQLAlchemy, psycopg and redis-py. Every run of
every tool is interleaved with the others, in a shuffled order each round. Per run: the
wall time, the time to the first fixture and to the first test's body (from the moment
pytest is started), the median gap between test ends, and the peak PSS of the servers
it started and of Docker's processes outside the containers (bench/runner.py). The cost
of a test is the marginal one: the difference in wall time between the two sizes, over
the difference in tests.

Peers that need more than pip get it here, and the report says so: the docker tools use
images already in the engine (pulled first where missing), Ryuk is off for all of them
(its image is not in the engine), and pytest-postgresql runs as ``nobody`` because
PostgreSQL refuses to run as root.
"""

from __future__ import annotations

import argparse
import random
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from harness import BENCH, Result, Stat, Table, Target, save
from harness import Run, run_pytest

WORKLOAD = BENCH / "workload"
ROOT = BENCH.parent
COMMON = [
    "pytest==9.2.0",
    "pytest-xdist==3.8.0",
    "sqlalchemy==2.1.9",
    "psycopg[binary]==3.3.9",
    "redis==8.1.0",
]
VENVS = {
    "servicematrix": ["servicematrix[pg,redis,sqlalchemy,docker]"],
    "testcontainers": ["testcontainers==4.15.0"],
    "pytest-databases": ["pytest-databases==0.19.0"],
    "pytest-postgresql": ["pytest-postgresql==10.0.0", "pytest-redis==5.0.1"],
}
IMAGES = ("postgres:15", "redis:7")
PG_BIN = Path("/usr/lib/postgresql/15/bin")
# One interpreter for every venv, which the unprivileged account can run too (a Python
# under root's home is out of its reach).
BASE_PYTHON = (
    Path("/usr/bin/python3") if Path("/usr/bin/python3").exists() else Path(sys.executable)
)


@dataclass(frozen=True)
class Tool:
    label: str
    venv: str
    plugin: str
    env: dict[str, str] = field(default_factory=dict)
    args: tuple[str, ...] = ()
    as_nobody: bool = False


TOOLS = {
    "servicematrix-local": Tool(
        "servicematrix, local", "servicematrix", "tool_servicematrix",
        {"SERVICEMATRIX_BACKEND": "local"},
    ),
    "servicematrix-docker": Tool(
        "servicematrix, docker", "servicematrix", "tool_servicematrix",
        {"SERVICEMATRIX_BACKEND": "docker"},
    ),
    "testcontainers-tuned": Tool(
        "testcontainers, TRUNCATE, durability off (tuned)", "testcontainers",
        "tool_testcontainers", {"BENCH_TUNED": "1"},
    ),
    "testcontainers": Tool(
        "testcontainers, TRUNCATE (as documented)", "testcontainers", "tool_testcontainers"
    ),
    "pytest-databases": Tool(
        "pytest-databases, TRUNCATE", "pytest-databases", "tool_pytest_databases",
        args=("-p", "pytest_databases.docker.postgres", "-p", "pytest_databases.docker.redis"),
    ),
    "pytest-postgresql": Tool(
        "pytest-postgresql + pytest-redis (database per test)", "pytest-postgresql",
        "tool_pytest_postgresql",
        args=(f"--postgresql-exec={PG_BIN / 'pg_ctl'}", "--redis-exec=/usr/bin/redis-server"),
        as_nobody=True,
    ),
}  # fmt: skip


def build_venvs(names: set[str], where: Path) -> dict[str, Path]:
    """One venv per tool family, each with COMMON pinned; servicematrix from its wheel."""
    wheels = where / "wheels"
    subprocess.run(
        [
            "uv",
            "build",
            "--wheel",
            "--quiet",
            "--out-dir",
            str(wheels),
            str(ROOT / "servicematrix"),
        ],
        check=True,
    )
    wheel = next(wheels.glob("servicematrix-*.whl"))
    pythons = {}
    for name in sorted(names):
        venv = where / name
        print(f"peers: venv {name}", flush=True)
        subprocess.run(
            ["uv", "venv", "--quiet", "--python", str(BASE_PYTHON), str(venv)], check=True
        )
        wanted = VENVS[name]
        if name == "servicematrix":
            wanted = [f"{wanted[0]} @ {wheel.as_uri()}"]
        python = venv / "bin" / "python"
        install = ["uv", "pip", "install", "--quiet", "--compile-bytecode", "--python"]
        subprocess.run([*install, str(python), *COMMON, *wanted], check=True)
        pythons[name] = python
    return pythons


# Asked of the servicematrix venv: where its docker backend's tests connect.
DOCKER_PATH = (
    "from servicematrix.config import Config; from servicematrix.provision import Worker; "
    "w = Worker(Config(backend='docker', pg=15), 'docker', 'peerspath', roles=['pg']); "
    "print(w.ready()['pg'].host); w.close()"
)


def docker_path(python: Path) -> str:
    host = subprocess.run(
        [str(python), "-c", DOCKER_PATH], capture_output=True, text=True, check=True
    ).stdout.strip()
    where = "127.0.0.1, a published port" if host == "127.0.0.1" else "its bridge address"
    return f"servicematrix's docker backend reached its containers at {where} ({host})."


def ensure_images() -> list[str]:
    """Pull what the engine lacks; what was pulled, for the report."""
    pulled = []
    for image in IMAGES:
        inspect = ["docker", "image", "inspect", image]
        if subprocess.run(inspect, capture_output=True, check=False).returncode:
            subprocess.run(["docker", "pull", "--quiet", image], check=True)
            pulled.append(image)
    return pulled


def run_once(tool: Tool, python: Path, tests: int, workers: int) -> Run:
    env = {**tool.env, "BENCH_TESTS": str(tests), "PYTHONPATH": str(WORKLOAD)}
    env |= {"SERVICEMATRIX_PG": "15", "SERVICEMATRIX_REDIS": "7"}
    env["TESTCONTAINERS_RYUK_DISABLED"] = "true"
    # The tool's own arguments first: plugins it loads must register before its fixtures.
    args = ["-n", str(workers), *tool.args, "-p", tool.plugin]
    return run_pytest(python, args, WORKLOAD, env, as_nobody=tool.as_nobody, what=tool.label)


def marginal_ms(small: Stat, large: Stat, sizes: tuple[int, int]) -> float:
    return (large.median - small.median) / (sizes[1] - sizes[0]) * 1000


def build_result(
    runs: dict[tuple[str, int, int], list[Run]],
    tools: list[str],
    sizes: tuple[int, int],
    workers: list[int],
    notes: list[str],
) -> Result:
    def stat(tool: str, size: int, n: int, what: str, unit: str = "s") -> Stat:
        return Stat([getattr(r, what) for r in runs[tool, size, n]], unit)

    tables, targets = [], []
    base = "servicematrix-local"
    for n in workers:
        per_test = {
            t: marginal_ms(stat(t, sizes[0], n, "wall"), stat(t, sizes[1], n, "wall"), sizes)
            for t in tools
        }
        rows = []
        for t in tools:
            wall = stat(t, sizes[1], n, "wall")
            first = stat(t, sizes[0], n, "first_test")
            fixture = stat(t, sizes[0], n, "first_fixture")
            pss = stat(t, sizes[1], n, "pss_mib", "MiB")
            runtime = stat(t, sizes[1], n, "runtime_mib", "MiB")
            ratio = wall.median / stat(base, sizes[1], n, "wall").median if base in tools else 1
            gap = stat(t, sizes[1], n, "per_test_ms", "ms")
            rows.append([
                TOOLS[t].label,
                f"{wall.median:.2f} s ({wall.min:.2f}-{wall.max:.2f})",
                f"{ratio:.2f}x",
                f"{per_test[t]:.2f} ms",
                f"{gap.median:.2f} ms",
                f"{fixture.median:.2f} s",
                f"{first.median:.2f} s",
                f"{pss.median:.0f} MiB",
                f"{runtime.median:.0f} MiB",
            ])  # fmt: skip
        tables.append(
            Table(
                f"-n {n}: wall at N={sizes[1]}, cost per test between N={sizes[0]} and "
                f"N={sizes[1]}, start-up at N={sizes[0]}, servers' peak PSS at N={sizes[1]}",
                [
                    "tool",
                    "wall (min-max)",
                    "x local",
                    "per test",
                    "median gap",
                    "first fixture",
                    "first test",
                    "servers' PSS",
                    "Docker's own PSS",
                ],
                rows,
            )
        )
        if {"servicematrix-docker", base} <= set(tools):
            times = per_test["servicematrix-docker"] / per_test[base]
            gaps = [
                stat(t, sizes[1], n, "per_test_ms", "ms").median
                for t in ("servicematrix-docker", base)
            ]
            walls = stat("servicematrix-docker", sizes[1], n, "wall")
            targets.append(
                Target(
                    f"-n {n}: docker backend's cost per test against the local backend's",
                    "<= 1.15x",
                    f"{times:.2f}x ({per_test['servicematrix-docker']:.2f} against "
                    f"{per_test[base]:.2f} ms)",
                    times <= 1.15,
                    ""
                    if times <= 1.15
                    else f"the median gap between tests is {gaps[0]:.2f} ms on docker against "
                    f"{gaps[1]:.2f} ms on local; docker's walls at N={sizes[1]} ranged "
                    f"{walls.min:.2f}-{walls.max:.2f} s (see the network path below)",
                )
            )
        peers = [t for t in tools if not t.startswith("servicematrix")]
        ours = [t for t in tools if t.startswith("servicematrix")]
        if peers and ours:
            fastest = min(peers, key=lambda t: stat(t, sizes[0], n, "first_fixture").median)
            peer = stat(fastest, sizes[0], n, "first_fixture").median
            mine = max(stat(t, sizes[0], n, "first_fixture").median for t in ours)
            targets.append(
                Target(
                    f"-n {n}: start-up to the first fixture, ours against the fastest peer",
                    "no slower",
                    f"{mine:.2f} s against {peer:.2f} s ({TOOLS[fastest].label})",
                    mine <= peer * 1.02,
                    "servicematrix chooses the backend and checks its images before the first "
                    "test (the usage error comes before any test), which the peers do inside "
                    "their first fixture; its first test starts at "
                    f"{min(stat(t, sizes[0], n, 'first_test').median for t in ours):.2f}-"
                    f"{max(stat(t, sizes[0], n, 'first_test').median for t in ours):.2f} s, "
                    "the peers' at "
                    f"{min(stat(t, sizes[0], n, 'first_test').median for t in peers):.2f} s "
                    "or later",
                )
            )
        if n > 1 and {"servicematrix-docker", "pytest-databases"} <= set(tools):
            mine = stat("servicematrix-docker", sizes[1], n, "pss_mib").median
            theirs = stat("pytest-databases", sizes[1], n, "pss_mib").median
            targets.append(
                Target(
                    f"-n {n}: docker servers' peak PSS against pytest-databases' shared pair",
                    "at or below",
                    f"{mine:.0f} against {theirs:.0f} MiB",
                    mine <= theirs,
                    f"a PostgreSQL and a Redis per worker ({n} of each) against one pair that "
                    "every worker shares, the isolation each worker's own servers buy; the "
                    "local backend's pairs take "
                    f"{stat('servicematrix-local', sizes[1], n, 'pss_mib').median:.0f} MiB"
                    if "servicematrix-local" in tools
                    else "a server pair per worker against one shared pair",
                )
            )
    loads = [r.load for rs in runs.values() for r in rs]
    notes.append(f"1-minute load average before each run: {min(loads):.2f} to {max(loads):.2f}.")
    return Result(
        "peers",
        "The same workload under servicematrix and its peers",
        "python bench/peers.py --rounds 3 --sizes " + " ".join(map(str, sizes)),
        "Medians over the rounds; ratios against servicematrix's local backend at the same "
        "worker count.",
        tables,
        targets,
        [],
        notes,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sizes", type=int, nargs=2, default=[200, 1000])
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--only", nargs="+", choices=TOOLS, default=list(TOOLS))
    args = parser.parse_args()
    begun = time.perf_counter()
    tools = args.only
    notes = ["Ryuk was off for every docker tool (TESTCONTAINERS_RYUK_DISABLED=true)."]
    if any(t != "servicematrix-local" and not TOOLS[t].as_nobody for t in tools):
        pulled = ensure_images()
        notes.append(f"Images pulled first: {', '.join(pulled) if pulled else 'none needed'}.")
    if "pytest-postgresql" in tools:
        notes.append("pytest-postgresql and pytest-redis ran as nobody: PostgreSQL refuses root.")
    scratch = Path(tempfile.mkdtemp(prefix="servicematrix-peers-"))
    scratch.chmod(0o755)
    try:
        pythons = build_venvs({TOOLS[t].venv for t in tools}, scratch)
        if "servicematrix-docker" in tools:
            notes.append(docker_path(pythons["servicematrix"]))
        cells = [(t, size, n) for t in tools for size in args.sizes for n in args.workers]
        runs: dict[tuple[str, int, int], list[Run]] = {cell: [] for cell in cells}
        for tool in tools:  # warm-up: imports, page cache, initdb'd clusters
            run_once(TOOLS[tool], pythons[TOOLS[tool].venv], 10, 0)
        for round_ in range(1, args.rounds + 1):
            random.shuffle(cells)
            for tool, size, n in cells:
                run = run_once(TOOLS[tool], pythons[TOOLS[tool].venv], size, n)
                runs[tool, size, n].append(run)
                print(
                    f"peers: round {round_} {tool} N={size} -n {n}: {run.wall:.2f} s, "
                    f"first test {run.first_test:.2f} s, {run.pss_mib:.0f} MiB",
                    flush=True,
                )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    result = build_result(runs, tools, tuple(args.sizes), args.workers, notes)
    save(result, time.perf_counter() - begun)


if __name__ == "__main__":
    main()
