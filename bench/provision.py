"""Worker provisioning time: PostgreSQL and Redis both ready, as one worker sees it.

    python bench/provision.py                      # local cold and warm, docker, testcontainers
    python bench/provision.py --only local-warm docker --runs 15

Each run provisions a fresh worker (both servers started and answering) and removes it.
Local "cold" starts from an empty cache directory, so it pays for initdb; "warm" reuses
the cached cluster, as every run after the first does. The testcontainers baseline is
its PostgresContainer and RedisContainer with their defaults, one after the other, on
the same images.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

from harness import STAT_COLUMNS, Plot, Result, Stat, Table, Target, parser, save

from servicematrix.backends import backend_class
from servicematrix.backends.docker import images
from servicematrix.config import Config
from servicematrix.provision import Worker, new_run_id

SCENARIOS = ("local-cold", "local-warm", "docker", "testcontainers")
BOUNDS = {
    "local-warm": (0.35, "local backend, warm, median"),
    "docker": (1.5, "docker backend, median"),
}
TITLE = "Worker provisioning: PostgreSQL and Redis both ready"


def once(config: Config, scenario: str) -> float:
    """Seconds until both servers of one fresh worker answer."""
    if scenario == "testcontainers":
        from testcontainers.community.postgres import PostgresContainer
        from testcontainers.community.redis import RedisContainer
        from testcontainers.core.config import testcontainers_config

        testcontainers_config.ryuk_disabled = True  # Ryuk's image is not in the engine
        pg_image, redis_image = images(config).values()
        started = time.perf_counter()
        with PostgresContainer(pg_image, driver=None), RedisContainer(redis_image):
            return time.perf_counter() - started
    # A first run on a machine: an empty cache, so initdb runs first.
    cold = scenario == "local-cold"
    scratch = tempfile.TemporaryDirectory(prefix="servicematrix-bench-") if cold else nullcontext()
    with scratch as empty:
        chosen = dataclasses.replace(config, cache_dir=Path(empty)) if empty else config
        with Worker(chosen, scenario.partition("-")[0], new_run_id(), "bench") as worker:
            worker.ready()
            assert worker.seconds is not None
            return worker.seconds


def targets(stats: dict[str, Stat]) -> list[Target]:
    found = [
        Target(what, f"<= {limit} s", f"{stats[s].median:.3f} s", stats[s].median <= limit)
        for s, (limit, what) in BOUNDS.items()
        if s in stats
    ]
    if "docker" in stats and "testcontainers" in stats:
        times = stats["testcontainers"].median / stats["docker"].median
        what = "docker backend vs testcontainers defaults one after the other"
        found.append(Target(what, ">= 2x faster", f"{times:.1f}x", times >= 2))
    for t in found:
        t.why = "" if t.met else "server start-up itself dominates; see the runs in the table"
    return found


def main() -> None:
    args = parser(__doc__)
    args.add_argument("--pg", default="15")
    args.add_argument("--redis", default="7")
    args.add_argument("--runs", type=int, default=10)
    args.add_argument("--cold-runs", type=int, default=5)
    args.add_argument("--only", nargs="+", choices=SCENARIOS, default=list(SCENARIOS))
    chosen = args.parse_args()
    config = Config.parse({"pg": chosen.pg, "redis": chosen.redis})
    for backend in {"local" if s.startswith("local") else "docker" for s in chosen.only}:
        if reason := backend_class(backend).unavailable(config):
            raise SystemExit(f"provision: cannot measure the {backend} backend: {reason}")
    stats = {}
    for name in chosen.only:
        runs = chosen.cold_runs if name == "local-cold" else chosen.runs
        once(config, name)  # warm-up: imports, page cache, the cached cluster for "warm"
        samples = []
        for i in range(runs):
            samples.append(once(config, name))
            print(f"provision: {name} {i + 1}/{runs}: {samples[-1]:.3f} s", flush=True)
        stats[name] = Stat(samples)
    fastest = min(s.median for s in stats.values())
    rows = [[name, *s.cells(), f"{s.median / fastest:.1f}x"] for name, s in stats.items()]
    caption = f"PostgreSQL {chosen.pg} and Redis {chosen.redis}, both ready"
    medians = "; ".join(f"{n} {s.median:.3f} s" for n, s in stats.items())
    points = {"median": [[n, s.median, s.min, s.max] for n, s in stats.items()]}
    summary = f"Median time until both servers answer: {medians}."
    result = Result("provision", "Worker provisioning", summary)
    result.tables.append(Table(caption, ["scenario", *STAT_COLUMNS, "x the fastest"], rows))
    result.targets = targets(stats)
    result.plots.append(
        Plot("provision.png", TITLE, "", "seconds (median, min-max)", "bar", points)
    )
    result.notes.append("testcontainers ran with Ryuk off: its image is not in the engine here.")
    save(result)


if __name__ == "__main__":
    main()
