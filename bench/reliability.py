"""Reliability: SIGKILL at random moments, two runs at once, bad input, faults, security.

    python bench/reliability.py                          # everything, local and docker
    python bench/reliability.py --quick                  # 2 kills per backend, no concurrent runs
    python bench/reliability.py --backends local --kills 4 --seed 7

Sections, each measured here and saved as one result (bench/results/reliability.json):
- security: tests/servicematrix/test_security.py, read back from its JUnit XML;
- bad input: every bad setting under pytest and ``python -m servicematrix check``;
- kills: pytest SIGKILLed at a seeded random moment of a small suite (-n 0 and -n 2
  alternately); nothing of the run (container, server process, data dir) may remain 15 s
  later; whatever does is recorded, then removed;
- concurrent runs: tests/integration twice at once per backend, sharing nothing;
- service faults and fuzzing: tests/integration/test_faults.py, test_schema.py,
  test_properties.py and test_cache_properties.py, per backend, with every record_property value.
"""

from __future__ import annotations

import argparse
import random
import shlex
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from common import Plot, Result, Stat, Table, Target, save
from reliability_concurrent import RunRecord, shared, two_at_once
from reliability_inputs import BOUND_SECONDS, try_all
from reliability_junit import ROOT, TestCase, run_pytest
from reliability_kills import CLEAN_SECONDS, ENDED, Kill, kills, make_suite

from servicematrix.backends import registry
from servicematrix.config import Config

FAULT_FILES = ["test_faults.py", "test_schema.py", "test_properties.py", "test_cache_properties.py"]
INTEGRATION = ROOT / "tests" / "integration"


@dataclass
class Bench:
    """What every section needs: the options, a scratch dir, the backends, the result."""

    args: argparse.Namespace
    root: Path
    backends: list[str]
    result: Result

    def pytest_args(self, backend: str, workers: str = "2") -> list[str]:
        return [
            *("-q", "-p", "no:cacheprovider", "-n", workers),
            f"--servicematrix-backend={backend}",
            f"--servicematrix-pg={self.args.pg}",
            f"--servicematrix-redis={self.args.redis}",
        ]

    def table(self, caption: str, columns: list[str], rows: list[list[str]]) -> None:
        self.result.tables.append(Table(caption, columns, rows))

    def target(self, what: str, target: str, measured: str, met: bool, why: str = "") -> None:
        self.result.targets.append(Target(what, target, measured, met, "" if met else why))


def failures(cases: list[TestCase], tail: str) -> str:
    failed = [
        f"{c.group}::{c.name}: {c.message}" for c in cases if c.outcome not in ("passed", "skipped")
    ]
    return "; ".join(failed) or ("" if cases else f"no test ran: {tail}")


def tally(cases: list[TestCase]) -> str:
    """E.g. '11 of 12 passed, 1 skipped'."""
    passed = sum(c.outcome == "passed" for c in cases)
    skipped = sum(c.outcome == "skipped" for c in cases)
    return f"{passed} of {len(cases)} passed" + (f", {skipped} skipped" if skipped else "")


def security(bench: Bench) -> None:
    print("security checks", flush=True)
    run = run_pytest(["tests/servicematrix/test_security.py", "-q"], bench.root / "security.xml")
    rows = [[c.name, c.outcome, f"{c.seconds:.2f} s"] for c in run.cases]
    bench.table("Security checks on real servers", ["check", "outcome", "time"], rows)
    bench.target(
        "security: loopback only, passwords per run and masked, private dirs",
        "every check passes",
        tally(run.cases),
        run.exit_code == 0 and bool(run.cases),
        failures(run.cases, run.tail),
    )


def bad_inputs(bench: Bench) -> None:
    print("bad configuration", flush=True)
    outcomes = try_all(bench.root)
    rows = [
        [
            o.case,
            o.command,
            str(o.exit_code),
            str(len(o.lines)),
            f"{o.seconds:.2f} s",
            "yes" if o.ok else "**no**",
            # The run's own temp dir says nothing to a reader: named by role instead.
            (o.lines[0] if o.lines else "")
            .replace(str(bench.root), "$RUN_DIR")[:160]
            .replace("|", "\\|"),
        ]
        for o in outcomes
    ]
    columns = ["bad input", "command", "exit", "lines", "time", "ok", "message (cut at 160)"]
    bench.table("Bad configuration", columns, rows)
    missed = [o for o in outcomes if not o.ok]
    bench.target(
        "bad configuration: one line naming the fix, non-zero exit, no hang",
        f"every case, each under {BOUND_SECONDS:.0f} s",
        f"{len(outcomes) - len(missed)} of {len(outcomes)}; "
        f"slowest {max(o.seconds for o in outcomes):.2f} s",
        not missed,
        "; ".join(
            f"{o.case} ({o.command}): exit {o.exit_code}, {len(o.lines)} lines, {o.seconds} s"
            for o in missed
        ),
    )


def kill_row(index: int, kill: Kill) -> list[str]:
    def seconds(value: float | None) -> str:
        return "never" if value is None else f"{value:.2f} s"

    return [
        kill.backend,
        str(index),
        kill.workers,
        f"{kill.after_up:.2f} s",
        f"{kill.delay:.2f} s",
        kill.up_at_kill,
        seconds(kill.seconds_to_clean),
        seconds(kill.seconds_to_exit),
        ", ".join(kill.leftovers) or "nothing",
    ]


def kill_section(bench: Bench) -> None:
    rng = random.Random(bench.args.seed)  # noqa: S311 - reproducible kill moments
    series: dict[str, list[list[object]]] = {}
    summary, detail = [], []
    for backend in bench.backends:
        print(f"kills on {backend}", flush=True)
        versions = bench.pytest_args(backend)[-2:]
        done = kills(backend, bench.args.kills, versions, rng, bench.root / "kills")
        detail += [kill_row(i, k) for i, k in enumerate(done, 1)]
        times = [k.seconds_to_clean for k in done if k.seconds_to_clean is not None]
        left = [k for k in done if k.leftovers]
        stat = Stat(times or [CLEAN_SECONDS])
        summary.append([backend, str(len(done)), str(len(left)), *stat.cells()])
        series[backend] = [[i, k.seconds_to_clean or CLEAN_SECONDS] for i, k in enumerate(done, 1)]
        bench.target(
            f"nothing of a SIGKILLed run left after {CLEAN_SECONDS:.0f} s ({backend})",
            f"0 of {len(done)} kills",
            f"{len(left)} of {len(done)}; clean after median {stat.median:.2f} s, "
            f"max {stat.max:.2f} s; {sum(k.up_at_kill != ENDED for k in done)} hit a live run",
            not left and len(times) == len(done),
            "; ".join(f"kill after {k.delay} s left {', '.join(k.leftovers)}" for k in left),
        )
    columns = ["backend", "kills", "left something", "median", "min", "max", "n"]
    bench.table("SIGKILL at a random moment: seconds until clean", columns, summary)
    columns = [
        *("backend", "kill", "-n", "after provisioning began", "into the run", "up at kill"),
        *("clean after", "all exited after", "left after 15 s"),
    ]
    bench.table("Every kill", columns, detail)
    bench.result.plots.append(
        Plot(
            "reliability-kills.png", "Time until a killed run is clean", "kill", "s", "line", series
        )
    )


def concurrent_row(run: RunRecord) -> list[str]:
    ports = sorted(run.values("pg_port") | run.values("redis_port"))
    intact = bool(run.workers) and all(w["marks_intact"] for w in run.workers)
    return [
        run.backend,
        run.label,
        str(run.exit_code),
        f"{run.seconds:.1f} s",
        str(len(run.workers)),
        " ".join(map(str, ports)),
        "yes" if intact else "**no**",
    ]


def concurrent_section(bench: Bench) -> None:
    rows = []
    for backend in bench.backends:
        print(f"two runs at once on {backend}", flush=True)
        if bench.args.concurrent_suite == "integration":
            cwd, suite = (
                ROOT,
                [str(INTEGRATION), *(f"--ignore={INTEGRATION / f}" for f in FAULT_FILES)],
            )
        else:
            cwd, suite = make_suite(bench.root / "concurrent-suite" / backend), []
        out = bench.root / "concurrent" / backend
        a, b = two_at_once(backend, [*suite, *bench.pytest_args(backend)], cwd, out)
        for run in (a, b):
            print(f"  run {run.label}: exit {run.exit_code} in {run.seconds:.1f} s", flush=True)
            rows.append(concurrent_row(run))
        problems = shared(a, b) + [f"run {r.label}: {r.tail}" for r in (a, b) if r.exit_code != 0]
        bench.target(
            f"two runs at once ({backend}): both pass, nothing shared",
            "both exit 0; no port, server, container or connection in common",
            f"exit {a.exit_code} and {b.exit_code}; {len(shared(a, b))} things shared",
            not problems,
            "; ".join(problems),
        )
    columns = ["backend", "run", "exit", "time", "workers", "server ports", "marks intact"]
    caption = f"Two runs at once ({bench.args.concurrent_suite} suite, -n 2 each)"
    bench.table(caption, columns, rows)


def faults_section(bench: Bench) -> None:
    files = [str(INTEGRATION / f) for f in FAULT_FILES if (INTEGRATION / f).exists()]
    if not files:
        bench.result.notes.append(
            "No service fault or fuzz tests present: " + ", ".join(FAULT_FILES)
        )
        return
    cases: list[tuple[str, TestCase]] = []
    for backend in bench.backends:
        print(f"service faults and fuzzing on {backend}", flush=True)
        run = run_pytest(
            [*files, *bench.pytest_args(backend)], bench.root / f"faults-{backend}.xml"
        )
        print(f"  exit {run.exit_code} in {run.seconds:.1f} s, {len(run.cases)} cases", flush=True)
        cases += [(backend, c) for c in run.cases]
        bench.target(
            f"service fault and fuzz tests pass ({backend})",
            "every test passes",
            tally(run.cases),
            run.exit_code == 0 and bool(run.cases),
            failures(run.cases, run.tail),
        )
    figures_tables(bench, cases)
    found = [c for _, c in cases]
    bench.target("5xx responses to generated requests", "0", *total(found, "status_5xx"))
    bench.target("stale reads under faults", "0", *total(found, "stale"))


def figures_tables(bench: Bench, cases: list[tuple[str, TestCase]]) -> None:
    """One table per test module, a column per property its tests recorded."""
    for module in dict.fromkeys(c.group for _, c in cases):
        mine = [(b, c) for b, c in cases if c.group == module]
        # The backend has a column of its own.
        names = sorted({k for _, c in mine for k in c.properties} - {"backend"})
        rows = [
            [b, c.name, c.outcome, f"{c.seconds:.1f} s"]
            + [c.properties.get(n, "").replace("|", "\\|") for n in names]
            for b, c in mine
        ]
        columns = ["backend", "test", "outcome", "time", *names]
        bench.table(f"{module}: recorded figures", columns, rows)


def total(cases: list[TestCase], prop: str) -> tuple[str, bool, str]:
    """(measured, met, why) for a target of 0 for ``prop`` summed over ``cases``."""
    values = [(c.name, int(float(c.properties[prop]))) for c in cases if prop in c.properties]
    count = sum(v for _, v in values)
    why = "; ".join(f"{name}: {v}" for name, v in values if v) or f"no test recorded {prop}"
    return f"{count} over {len(values)} tests", bool(values) and count == 0, why


def usable_backends(args: argparse.Namespace, result: Result) -> list[str]:
    """The asked-for backends that can serve here; the others become missed targets."""
    usable = []
    for backend in args.backends.split(","):
        config = Config.parse({"backend": backend, "pg": args.pg, "redis": args.redis})
        reason = registry()[backend].unavailable(config)
        if reason:
            result.targets.append(Target(f"{backend} backend measured", "yes", "no", False, reason))
        else:
            usable.append(backend)
    return usable


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", default="local,docker", help="comma-separated")
    parser.add_argument("--kills", type=int, default=10, help="SIGKILLs per backend")
    parser.add_argument("--seed", type=int, default=1, help="seeds the kill moments")
    parser.add_argument("--pg", default="15", help="PostgreSQL major version")
    parser.add_argument("--redis", default="7", help="Redis major version, or valkey-8")
    parser.add_argument(
        "--concurrent-suite", choices=["integration", "generated"], default="integration"
    )
    parser.add_argument("--quick", action="store_true", help="2 kills each, no concurrent runs")
    args = parser.parse_args()
    if args.quick:
        args.kills = min(args.kills, 2)
    return args


def main() -> None:
    args = parse_args()
    started = time.monotonic()
    result = Result(
        name="reliability",
        title="Reliability: kills, concurrent runs, bad input, service faults, security",
        command=shlex.join(["python", "bench/reliability.py", *sys.argv[1:]]),
    )
    backends = usable_backends(args, result)
    with tempfile.TemporaryDirectory(prefix="reliability-") as tmp:
        bench = Bench(args, Path(tmp), backends, result)
        security(bench)
        bad_inputs(bench)
        kill_section(bench)
        if not args.quick:
            concurrent_section(bench)
        faults_section(bench)
    met = sum(t.met for t in result.targets)
    result.summary = f"{met} of {len(result.targets)} targets met."
    print(result.summary)
    save(result, time.monotonic() - started)


if __name__ == "__main__":
    main()
