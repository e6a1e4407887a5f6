"""One workload under servicematrix and under the tools projects use instead, side by side.

    python bench/peers.py                            # 3 rounds, N = 200 and 1000, -n 0 and 2
    python bench/peers.py --rounds 1 --sizes 50 200 --only servicematrix-local testcontainers

Each tool runs the workload (bench/workload) with its own fixtures, in a venv per tool family
pinning the same pytest, xdist, SQLAlchemy, psycopg and redis-py: a warm-up run each, then all
runs interleaved in shuffled rounds, timed by bench/harness.py; a test's cost is the marginal
one, between the two sizes. Missing images are pulled first, Ryuk is off (its image is not in
the engine), and pytest-postgresql runs as ``nobody``: PostgreSQL refuses root."""

from __future__ import annotations

import random
import subprocess
import sys
import tempfile
from argparse import Namespace
from dataclasses import dataclass, field
from pathlib import Path

from harness import ROOT, WORKLOAD, Result, Run, Stat, Table, Target, parser, run_pytest, save

COMMON = "pytest==9.2.0 pytest-xdist==3.8.0 sqlalchemy==2.1.9 psycopg[binary]==3.3.9 redis==8.1.0"
VENVS = {
    "servicematrix": "servicematrix[pg,redis,sqlalchemy,docker]",
    "testcontainers": "testcontainers==4.15.0",
    "pytest-databases": "pytest-databases==0.19.0",
    "pytest-postgresql": "pytest-postgresql==10.0.0 pytest-redis==5.0.1",
}
IMAGES = ("postgres:15", "redis:7")
ENV = {"SERVICEMATRIX_PG": "15", "SERVICEMATRIX_REDIS": "7", "TESTCONTAINERS_RYUK_DISABLED": "true"}
# One interpreter for every venv, which nobody can run too (not one under root's home).
BASE_PYTHON = next(p for p in (Path("/usr/bin/python3"), Path(sys.executable)) if p.exists())
LOCAL, DOCKER, SHARED = "servicematrix-local", "servicematrix-docker", "pytest-databases"
FIELDS = ("wall", "first_fixture", "first_test", "per_test_ms", "pss_mib", "runtime_mib")
CELLS = {"x local": "{ratio:.2f}x", "per test": "{cost:.2f} ms"}
CELLS |= {"median gap": "{per_test_ms:.2f} ms", "first fixture": "{first_fixture:.2f} s"}
CELLS |= {"first test": "{first_test:.2f} s", "servers' PSS": "{pss_mib:.0f} MiB"}
CELLS |= {"Docker's own PSS": "{runtime_mib:.0f} MiB"}
TITLE = "The same workload under servicematrix and its peers"
SUMMARY = "Medians of the rounds; ratios to servicematrix's local backend at the same worker count."
Runs = dict[tuple[str, int, int], list[Run]]


@dataclass(frozen=True)
class Tool:
    label: str
    venv: str
    env: dict[str, str] = field(default_factory=dict)
    args: tuple[str, ...] = ()
    as_nobody: bool = False

    def run(self, pythons: dict[str, Path], tests: int, workers: int) -> Run:
        env = {**self.env, **ENV, "BENCH_TESTS": str(tests)}
        # The tool's own arguments first: plugins it loads must register before its fixtures.
        args = ["-n", str(workers), *self.args, "-p", "tool_" + self.venv.replace("-", "_")]
        return run_pytest(pythons[self.venv], args, WORKLOAD, env, as_nobody=self.as_nobody)


PLUGINS = ("-p", "pytest_databases.docker.postgres", "-p", "pytest_databases.docker.redis")
BINS = ("--postgresql-exec=/usr/lib/postgresql/15/bin/pg_ctl", "--redis-exec=/usr/bin/redis-server")
TOOLS = {
    LOCAL: Tool("servicematrix, local", "servicematrix", {"SERVICEMATRIX_BACKEND": "local"}),
    DOCKER: Tool("servicematrix, docker", "servicematrix", {"SERVICEMATRIX_BACKEND": "docker"}),
    "testcontainers-tuned": Tool("testcontainers, TRUNCATE, durability off (tuned)",
                                 "testcontainers", {"BENCH_TUNED": "1"}),
    "testcontainers": Tool("testcontainers, TRUNCATE (as documented)", "testcontainers"),
    SHARED: Tool("pytest-databases, TRUNCATE", SHARED, args=PLUGINS),
    "pytest-postgresql": Tool("pytest-postgresql + pytest-redis (database per test)",
                              "pytest-postgresql", args=BINS, as_nobody=True),
}  # fmt: skip


def uv(*args: object) -> None:
    subprocess.run(["uv", *map(str, args)], check=True)


def build_venvs(names: set[str], where: Path) -> dict[str, Path]:
    """One venv per tool family, each with COMMON pinned; servicematrix from its own wheel."""
    uv("build", "--wheel", "--quiet", "--out-dir", where / "wheels", ROOT / "servicematrix")
    wheel = next((where / "wheels").glob("servicematrix-*.whl")).as_uri()
    pythons = {}
    for name in sorted(names):
        print(f"peers: venv {name}", flush=True)
        uv("venv", "--quiet", "--python", BASE_PYTHON, where / name)
        own = [f"{VENVS[name]} @ {wheel}"] if name == "servicematrix" else VENVS[name].split()
        pythons[name] = python = where / name / "bin" / "python"
        uv("pip", "install", "--quiet", "--compile-bytecode", "-p", python, *COMMON.split(), *own)
    return pythons


def ensure_images() -> str:
    """Pull what the engine lacks; the note that says what was pulled."""
    pulled = []
    for image in IMAGES:
        inspect = ["docker", "image", "inspect", image]
        if subprocess.run(inspect, capture_output=True, check=False).returncode:
            subprocess.run(["docker", "pull", "--quiet", image], check=True)
            pulled.append(image)
    return f"Images pulled first: {', '.join(pulled) or 'none needed'}."


def build_result(runs: Runs, args: Namespace, notes: list[str]) -> Result:
    tools, (small, large) = args.only, args.sizes
    stats = {(*k, f): Stat([getattr(r, f) for r in rs]) for k, rs in runs.items() for f in FIELDS}
    # Medians: start-up at the small size, the rest at the large one; cost between them.
    size_of = {f: small if f.startswith("first") else large for f in FIELDS}
    peers = [t for t in tools if not t.startswith("servicematrix")]
    ours = [t for t in tools if t.startswith("servicematrix")]
    result = Result(name="peers", title=TITLE, summary=SUMMARY, notes=notes)
    for n in args.workers:
        m = {t: {f: stats[t, size_of[f], n, f].median for f in FIELDS} for t in tools}
        base = m[LOCAL]["wall"] if LOCAL in tools else None
        rows = []
        for t, tm in m.items():
            tm["cost"] = (tm["wall"] - stats[t, small, n, "wall"].median) / (large - small) * 1000
            tm["ratio"] = tm["wall"] / (base or tm["wall"])
            cells = [c.format(**tm) for c in CELLS.values()]
            rows.append([TOOLS[t].label, stats[t, large, n, "wall"].spread(), *cells])
        caption = f"-n {n}: wall at N={large}, cost per test between N={small} and N={large}, "
        caption += f"start-up at N={small}, servers' peak PSS at N={large}"
        result.tables.append(Table(caption, ["tool", "wall (min-max)", *CELLS], rows))
        if {DOCKER, LOCAL} <= set(tools):
            met = (times := m[DOCKER]["cost"] / m[LOCAL]["cost"]) <= 1.15
            why = f"median gap between tests {m[DOCKER]['per_test_ms']:.2f} ms on docker, "
            why += f"{m[LOCAL]['per_test_ms']:.2f} ms on local; docker's walls at N={large}: "
            why += f"{stats[DOCKER, large, n, 'wall'].spread()}; its network path is in the notes"
            measured = f"{times:.2f}x ({m[DOCKER]['cost']:.2f} against {m[LOCAL]['cost']:.2f} ms)"
            what = f"-n {n}: docker backend's cost per test against the local backend's"
            result.targets.append(Target(what, "<= 1.15x", measured, met, "" if met else why))
        if peers and ours:
            peer, fastest = min((m[t]["first_fixture"], t) for t in peers)
            mine = max(m[t]["first_fixture"] for t in ours)
            first = sorted(m[t]["first_test"] for t in ours)
            why = "servicematrix picks the backend and checks its images before any test (a usage "
            why += "error comes first), the peers in their first fixture; its first test starts "
            why += f"at {first[0]:.2f}-{first[-1]:.2f} s, the peers' at "
            why += f"{min(m[t]['first_test'] for t in peers):.2f} s or later"
            what = f"-n {n}: start-up to the first fixture, ours against the fastest peer"
            measured = f"{mine:.2f} s against {peer:.2f} s ({TOOLS[fastest].label})"
            result.targets.append(Target(what, "no slower", measured, mine <= peer * 1.02, why))
        if n > 1 and {DOCKER, SHARED} <= set(tools):
            mine, theirs = m[DOCKER]["pss_mib"], m[SHARED]["pss_mib"]
            why = f"a PostgreSQL and a Redis per worker ({n} of each) against one pair that every "
            why += "worker shares: the isolation each worker's own servers buy"
            if LOCAL in tools:
                why += f"; the local backend's pairs take {m[LOCAL]['pss_mib']:.0f} MiB"
            what = f"-n {n}: docker servers' peak PSS against pytest-databases' shared pair"
            measured = f"{mine:.0f} against {theirs:.0f} MiB"
            result.targets.append(Target(what, "at or below", measured, mine <= theirs, why))
    loads = [r.load for rs in runs.values() for r in rs]
    notes.append(f"1-minute load average before each run: {min(loads):.2f} to {max(loads):.2f}.")
    return result


def main() -> None:
    cli = parser(__doc__)
    cli.add_argument("--rounds", type=int, default=3)
    cli.add_argument("--sizes", type=int, nargs=2, default=[200, 1000])
    cli.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    cli.add_argument("--only", nargs="+", choices=TOOLS, default=list(TOOLS))
    args = cli.parse_args()
    notes = ["Ryuk was off for every docker tool (TESTCONTAINERS_RYUK_DISABLED=true)."]
    if any(t != LOCAL and not TOOLS[t].as_nobody for t in args.only):
        notes.append(ensure_images())
    if "pytest-postgresql" in args.only:
        notes.append("pytest-postgresql and pytest-redis ran as nobody: PostgreSQL refuses root.")
    with tempfile.TemporaryDirectory(prefix="servicematrix-peers-") as scratch:
        Path(scratch).chmod(0o755)  # nobody runs the venvs in it
        pythons = build_venvs({TOOLS[t].venv for t in args.only}, Path(scratch))
        if DOCKER in args.only:  # docker_path.py prints the note
            ask = [pythons["servicematrix"], WORKLOAD / "docker_path.py"]
            notes.append(subprocess.check_output(ask, text=True).strip())
        cells = [(t, size, n) for t in args.only for size in args.sizes for n in args.workers]
        runs: Runs = {cell: [] for cell in cells}
        for t in args.only:  # warm-up: imports, page cache, initdb'd clusters
            TOOLS[t].run(pythons, 10, 0)
        for round_ in range(1, args.rounds + 1):
            random.shuffle(cells)
            for t, size, n in cells:
                runs[t, size, n].append(run := TOOLS[t].run(pythons, size, n))
                done = f"{run.wall:.2f} s, first test {run.first_test:.2f} s, {run.pss_mib:.0f} MiB"
                print(f"peers: round {round_} {t} N={size} -n {n}: {done}", flush=True)
    save(build_result(runs, args, notes))


if __name__ == "__main__":
    main()
