"""Worker provisioning time: PostgreSQL and Redis both ready, as one worker sees it.

    python bench/provision.py --backend local --pg 15 --redis 7 --runs 10
    python bench/provision.py --backend docker --pg 15 --redis 7 --runs 10 --testcontainers

Each run provisions a fresh worker (servers started, both answering) and removes it
again; the first local run of a PostgreSQL binary also pays for its one initdb, so it is
reported apart ("cold"). ``--testcontainers`` adds, in the same process, the time of
testcontainers' PostgresContainer and RedisContainer with their default settings,
started one after the other.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

from servicematrix.backends import select_backend
from servicematrix.config import Config
from servicematrix.provision import Worker, new_run_id


def servicematrix_once(config: Config, backend: str) -> float:
    with Worker(config, backend, new_run_id(), "bench") as worker:
        worker.ready()
        assert worker.seconds is not None
        return worker.seconds


def testcontainers_once(config: Config) -> float:
    from testcontainers.community.postgres import PostgresContainer
    from testcontainers.community.redis import RedisContainer

    from servicematrix.backends.docker import images

    pg_image, redis_image = images(config)
    started = time.perf_counter()
    with PostgresContainer(pg_image, driver=None), RedisContainer(redis_image):
        return time.perf_counter() - started


def summarize(name: str, samples: list[float]) -> str:
    return (
        f"{name}: median {statistics.median(samples):.3f} s, min {min(samples):.3f} s, "
        f"max {max(samples):.3f} s, n={len(samples)}"
    )


def measure(runs: int, once: Callable[[], float]) -> list[float]:
    return [once() for _ in range(runs)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--pg")
    parser.add_argument("--redis")
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--testcontainers", action="store_true")
    args = parser.parse_args()
    config = Config.parse({"backend": args.backend, "pg": args.pg, "redis": args.redis})
    backend = select_backend(config).name
    cold = servicematrix_once(config, backend)
    print(f"servicematrix {backend}: first run {cold:.3f} s")
    samples = measure(args.runs, lambda: servicematrix_once(config, backend))
    print(summarize(f"servicematrix {backend} (warm)", samples))
    if args.testcontainers:
        baseline = measure(args.runs, lambda: testcontainers_once(config))
        print(summarize("testcontainers defaults, one after the other", baseline))
        ratio = statistics.median(baseline) / statistics.median(samples)
        print(f"servicematrix is {ratio:.1f}x faster")


if __name__ == "__main__":
    main()
