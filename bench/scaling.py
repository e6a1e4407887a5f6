"""Wall time of shop's suite by xdist worker count, and the cost of a test as a suite grows.

    python bench/scaling.py                        # 3 rounds; sizes 100, 400, 1600
    python bench/scaling.py --rounds 1 --sizes 100 400

Run it with the python of a virtualenv that has shop, its tests group and the plugin;
pytest runs as its subprocess on the local backend, PostgreSQL 15 and Redis 7, in
shuffled rounds after an untimed warm-up. Part a: ``pytest tests/integration`` at -n 0,
1 and 2 (``--dist worksteal``, as the nox sessions run it). Part b: the peer workload
(bench/workload) at each size under -n 0; the cost of a test is the median gap between
consecutive test ends, so start-up is left out. Part b runs once more with the garbage
collector frozen after collection (``-p gcfreeze``): a cost that grows with the suite
only without it is the interpreter scanning pytest's own objects, not the servers.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

from harness import ROOT, WORKLOAD, Plot, Result, Run, Stat, Table, Target, parser, run_pytest, save

PAIR = {"SERVICEMATRIX_BACKEND": "local", "SERVICEMATRIX_PG": "15", "SERVICEMATRIX_REDIS": "7"}
GROWTH = 0.10
PYTHON = Path(sys.executable)


def suite_run(workers: int) -> Run:
    args = ["-n", str(workers), "--dist=worksteal", "tests/integration", "-p", "no:cacheprovider"]
    return run_pytest(PYTHON, args, ROOT, PAIR)


def workload_run(size: int, frozen: bool) -> Run:
    args = ["-n", "0", "-p", "tool_servicematrix", *(["-p", "gcfreeze"] if frozen else [])]
    return run_pytest(PYTHON, args, WORKLOAD, {**PAIR, "BENCH_TESTS": str(size)})


def main() -> None:
    args = parser(__doc__)
    args.add_argument("--rounds", type=int, default=3)
    args.add_argument("--sizes", type=int, nargs="+", default=[100, 400, 1600])
    chosen = args.parse_args()
    counts = chosen.sizes
    suite: dict[int, list[Run]] = {n: [] for n in (0, 1, 2)}
    sizes: dict[tuple[int, bool], list[Run]] = {(s, f): [] for s in counts for f in (False, True)}
    suite_run(2), workload_run(counts[0], False)  # warm-up: page cache, cached clusters
    for round_ in range(1, chosen.rounds + 1):
        cells: list[int | tuple[int, bool]] = [*suite, *sizes]
        random.shuffle(cells)
        for cell in cells:
            if isinstance(cell, int):
                suite[cell].append(run := suite_run(cell))
            else:
                sizes[cell].append(run := workload_run(*cell))
            print(f"scaling: round {round_} {cell}: {run.wall:.2f} s", flush=True)
    walls = {n: Stat([r.wall for r in runs]) for n, runs in suite.items()}
    cost = {key: Stat([r.per_test_ms for r in runs], "ms") for key, runs in sizes.items()}
    small, large = counts[0], counts[-1]
    growth = cost[large, False].median / cost[small, False].median - 1
    frozen = cost[large, True].median / cost[small, True].median - 1
    line = {
        "as run": [[s, cost[s, False].median] for s in counts],
        "gc frozen after collection": [[s, cost[s, True].median] for s in counts],
    }
    result = Result(
        name="scaling",
        title="Scaling: xdist workers and suite size",
        summary=f"tests/integration at -n 2 takes {walls[2].median:.1f} s against "
        f"{walls[0].median:.1f} s at -n 0; a test costs {cost[small, False].median:.2f} ms at "
        f"{small} tests and {cost[large, False].median:.2f} ms at {large} ({growth:+.0%}).",
        tables=[
            Table(
                "tests/integration, local backend",
                ["workers", "median", "min", "max", "n", "speed-up"],
                [
                    [f"-n {n}", *s.cells(2), f"{walls[0].median / s.median:.2f}x"]
                    for n, s in walls.items()
                ],
            ),
            Table(
                "The workload at -n 0: cost of a test (median gap between test ends)",
                ["tests", "median", "min", "max", "n", "median, gc frozen"],
                [[str(s), *cost[s, False].cells(2), cost[s, True].cells(2)[0]] for s in counts],
            ),
        ],
        targets=[
            Target(
                f"cost of a test at {large} tests against {small}",
                f"within {GROWTH:.0%}",
                f"{growth:+.1%} ({cost[large, False].median:.2f} against "
                f"{cost[small, False].median:.2f} ms)",
                growth <= GROWTH,
                "" if growth <= GROWTH else f"with the gc frozen the growth is {frozen:+.0%}",
            )
        ],
        plots=[
            Plot(
                "scaling.png",
                "Cost of a test by suite size",
                "tests in the suite",
                "ms per test (median gap)",
                "line",
                line,
            ),
        ],
    )
    save(result)


if __name__ == "__main__":
    main()
