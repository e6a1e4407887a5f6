"""Worker provisioning time: PostgreSQL and Redis both ready, as one worker sees it.

    python bench/provision.py                      # local cold and warm, docker, testcontainers
    python bench/provision.py --quick              # a few runs of each
    python bench/provision.py --only local --pg 15 --redis 7 --runs 15

Each run provisions a fresh worker (both servers started and answering) and removes it
again. Local "cold" starts from an empty cache directory, so it pays for initdb; "warm"
reuses the cached cluster, as every run after the first does. The testcontainers
baseline is its PostgresContainer and RedisContainer with their default settings,
started one after the other, on the same images.
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from harness import STAT_COLUMNS, Plot, Result, Stat, Table, Target, ratio, save

from servicematrix.backends import backend_class
from servicematrix.config import Config
from servicematrix.provision import Worker, new_run_id

SCENARIOS = ("local-cold", "local-warm", "docker", "testcontainers")


def servicematrix_once(config: Config, backend: str) -> float:
    with Worker(config, backend, new_run_id(), "bench") as worker:
        worker.ready()
        assert worker.seconds is not None
        return worker.seconds


def local_cold_once(config: Config) -> float:
    """A first run on a machine: the cache is empty, so initdb runs first."""
    cache = Path(tempfile.mkdtemp(prefix="servicematrix-bench-cache-"))
    try:
        return servicematrix_once(dataclasses.replace(config, cache_dir=cache), "local")
    finally:
        shutil.rmtree(cache, ignore_errors=True)


def testcontainers_once(config: Config) -> float:
    from testcontainers.community.postgres import PostgresContainer
    from testcontainers.community.redis import RedisContainer
    from testcontainers.core.config import testcontainers_config

    from servicematrix.backends.docker import images

    # Ryuk's image is not in the engine (and cannot be pulled here): off, as in bench/peers.py.
    testcontainers_config.ryuk_disabled = True
    pg_image, redis_image = images(config).values()
    started = time.perf_counter()
    with PostgresContainer(pg_image, driver=None), RedisContainer(redis_image):
        return time.perf_counter() - started


def measure(name: str, runs: int, once: Callable[[], float]) -> Stat:
    once()  # warm-up: imports, page cache, the cached cluster for "warm"
    samples = []
    for i in range(runs):
        samples.append(once())
        print(f"  {name} {i + 1}/{runs}: {samples[-1]:.3f} s", flush=True)
    return Stat(samples)


def runners(config: Config) -> dict[str, Callable[[], float]]:
    return {
        "local-cold": lambda: local_cold_once(config),
        "local-warm": lambda: servicematrix_once(config, "local"),
        "docker": lambda: servicematrix_once(config, "docker"),
        "testcontainers": lambda: testcontainers_once(config),
    }


def check_available(config: Config, scenarios: list[str]) -> None:
    for backend in {"local" if s.startswith("local") else "docker" for s in scenarios}:
        reason = backend_class(backend).unavailable(config)
        if reason:
            raise SystemExit(f"provision: cannot measure the {backend} backend: {reason}")


def bound(what: str, stat: Stat, limit: float) -> Target:
    return Target(what, f"<= {limit} s", f"{stat.median:.3f} s", stat.median <= limit)


def targets(stats: dict[str, Stat]) -> list[Target]:
    found = []
    if warm := stats.get("local-warm"):
        found.append(bound("local backend, warm, median", warm, 0.35))
    if docker := stats.get("docker"):
        found.append(bound("docker backend, median", docker, 1.5))
        if tc := stats.get("testcontainers"):
            times = tc.median / docker.median
            what = "docker backend vs testcontainers defaults one after the other"
            found.append(Target(what, ">= 2x faster", f"{times:.1f}x", times >= 2))
    for t in found:
        if not t.met:
            t.why = "server start-up itself dominates; see the per-run figures in the table"
    return found


def build_result(stats: dict[str, Stat], pair: str, command: str) -> Result:
    fastest = min(s.median for s in stats.values())
    table = Table(
        f"{pair}, both ready",
        ["scenario", *STAT_COLUMNS, "x the fastest"],
        [[name, *s.cells(), ratio(s.median, fastest)] for name, s in stats.items()],
    )
    plot = Plot(
        "provision.png",
        "Worker provisioning: PostgreSQL and Redis both ready",
        "",
        "seconds (median, min-max)",
        "bar",
        {"median": [[n, s.median, s.min, s.max] for n, s in stats.items()]},
    )
    summary = "; ".join(f"{n} {s.median:.3f} s" for n, s in stats.items())
    return Result(
        "provision",
        "Worker provisioning",
        command,
        f"Median time until both servers answer: {summary}.",
        [table],
        targets(stats),
        [plot],
        ["testcontainers ran with Ryuk off: its image is not in the engine here."],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pg", default="15")
    parser.add_argument("--redis", default="7")
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--cold-runs", type=int, default=5)
    parser.add_argument("--only", nargs="+", choices=SCENARIOS, default=list(SCENARIOS))
    parser.add_argument("--quick", action="store_true", help="3 runs of each")
    args = parser.parse_args()
    started = time.perf_counter()
    config = Config.parse({"pg": args.pg, "redis": args.redis})
    check_available(config, args.only)
    once = runners(config)
    stats = {}
    for name in args.only:
        runs = 3 if args.quick else args.cold_runs if name == "local-cold" else args.runs
        print(f"provision: {name}, {runs} runs", flush=True)
        stats[name] = measure(name, runs, once[name])
    command = f"python bench/provision.py --pg {args.pg} --redis {args.redis} --runs {args.runs}"
    pair = f"PostgreSQL {args.pg} and Redis {args.redis}"
    save(build_result(stats, pair, command), time.perf_counter() - started)


if __name__ == "__main__":
    main()
