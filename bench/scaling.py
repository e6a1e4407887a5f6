"""Wall time of the shop suite by xdist worker count, and the cost of a test as a suite grows.

    python bench/scaling.py                        # 3 rounds; sizes 100, 400, 1600
    python bench/scaling.py --rounds 1 --sizes 100 400

Run it with the python of a virtualenv that has shop, its tests group and the plugin
(any nox integration session's, or the bench session's); pytest runs as its subprocess
on the local backend, PostgreSQL 15 and Redis 7.

Part a: ``pytest tests/integration`` at -n 0, 1 and 2 (``--dist worksteal``, as the nox
sessions run it), interleaved round by round after an untimed warm-up. Part b: the peer
workload (bench/workload) at each size under -n 0, servicematrix's local backend; the
cost of a test is the median gap between consecutive test ends, so start-up and the
first test (servers, schema, engine) are left out. Part b runs once more with Python's
garbage collector frozen after collection (``gc.freeze()``, by ``-p gcfreeze``), which
tells whether a cost that grows with the suite is the interpreter scanning the run's
own objects (pytest keeps every item and report) rather than the servers or the plugin.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

from harness import BENCH, Plot, Result, Stat, Table, Target, save
from harness import WORKLOAD, Run, run_pytest

ROOT = BENCH.parent
PAIR = {"SERVICEMATRIX_BACKEND": "local", "SERVICEMATRIX_PG": "15", "SERVICEMATRIX_REDIS": "7"}
GROWTH_TARGET = 0.10


def suite_run(workers: int) -> Run:
    args = ["-n", str(workers), "--dist=worksteal", "tests/integration", "-p", "no:cacheprovider"]
    return run_pytest(
        Path(sys.executable), args, ROOT, PAIR, what=f"tests/integration -n {workers}"
    )


def workload_run(size: int, frozen: bool) -> Run:
    args = ["-n", "0", "-p", "tool_servicematrix", *(["-p", "gcfreeze"] if frozen else [])]
    env = {**PAIR, "BENCH_TESTS": str(size)}
    return run_pytest(Path(sys.executable), args, WORKLOAD, env, what=f"workload N={size}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 400, 1600])
    args = parser.parse_args()
    begun = time.perf_counter()
    suite: dict[int, list[Run]] = {n: [] for n in (0, 1, 2)}
    sizes: dict[tuple[int, bool], list[Run]] = {
        (s, f): [] for s in args.sizes for f in (False, True)
    }
    suite_run(2), workload_run(args.sizes[0], False)  # warm-up: page cache, cached clusters
    for round_ in range(1, args.rounds + 1):
        cells: list[tuple[str, object]] = [("suite", n) for n in suite]
        cells += [("sizes", key) for key in sizes]
        random.shuffle(cells)
        for kind, key in cells:
            if kind == "suite":
                assert isinstance(key, int)
                suite[key].append(run := suite_run(key))
            else:
                assert isinstance(key, tuple)
                sizes[key].append(run := workload_run(*key))
            print(f"scaling: round {round_} {kind} {key}: {run.wall:.2f} s", flush=True)
    save(build(suite, sizes, args.sizes), time.perf_counter() - begun)


def build(
    suite: dict[int, list[Run]], sizes: dict[tuple[int, bool], list[Run]], counts: list[int]
) -> Result:
    walls = {n: Stat([r.wall for r in runs]) for n, runs in suite.items()}
    rows = [
        [f"-n {n}", *s.cells(2), f"{walls[0].median / s.median:.2f}x"] for n, s in walls.items()
    ]
    cost = {key: Stat([r.per_test_ms for r in runs], "ms") for key, runs in sizes.items()}
    size_rows = [[str(s), *cost[s, False].cells(2), *cost[s, True].cells(2)[:1]] for s in counts]
    small, large = counts[0], counts[-1]
    growth = cost[large, False].median / cost[small, False].median - 1
    frozen = cost[large, True].median / cost[small, True].median - 1
    why = (
        ""
        if growth <= GROWTH_TARGET
        else (f"with the collector frozen after collection the growth is {frozen:+.0%}")
    )
    return Result(
        "scaling",
        "Scaling: xdist workers and suite size",
        "python bench/scaling.py --rounds 3 --sizes " + " ".join(map(str, counts)),
        f"tests/integration at -n 2 takes {walls[2].median:.1f} s against {walls[0].median:.1f} s "
        f"at -n 0; a test costs {cost[small, False].median:.2f} ms at {small} tests and "
        f"{cost[large, False].median:.2f} ms at {large} ({growth:+.0%}).",
        [
            Table(
                "tests/integration, local backend",
                ["workers", "median", "min", "max", "n", "speed-up"],
                rows,
            ),
            Table(
                "The workload at -n 0: cost of a test (median gap between test ends)",
                ["tests", "median", "min", "max", "n", "median, gc frozen"],
                size_rows,
            ),
        ],
        [
            Target(
                f"cost of a test at {large} tests against {small}",
                f"within {GROWTH_TARGET:.0%}",
                f"{growth:+.1%} ({cost[large, False].median:.2f} against "
                f"{cost[small, False].median:.2f} ms)",
                growth <= GROWTH_TARGET,
                why,
            )
        ],
        [
            Plot(
                "scaling.png",
                "Cost of a test by suite size",
                "tests in the suite",
                "ms per test (median gap)",
                "line",
                {
                    "as run": [[s, cost[s, False].median] for s in counts],
                    "gc frozen after collection": [[s, cost[s, True].median] for s in counts],
                },
            )
        ],
    )


if __name__ == "__main__":
    main()
