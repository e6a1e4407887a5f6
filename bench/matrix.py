"""The PostgreSQL x Redis matrix, ``nox -s integration``: this checkout against an earlier
configuration of it, in one run.

    python bench/matrix.py --against 415a863           # the whole matrix, both ways
    python bench/matrix.py --against 415a863 --sessions "integration(pg='15', redis='7')"

The earlier configuration is a git worktree of ``--against`` in a temporary folder. Both
use one nox envdir (this checkout's .nox), made ready first by an untimed
``nox --install-only`` pass, so neither pays for creating virtualenvs; each then runs its
sessions as its own noxfile says (in parallel where it allows that), timed from outside.
Per-session seconds come from nox's ``--report`` JSON; the generated cases each cell ran
come from the JUnit XML its pytest wrote (the ``cases`` that Schemathesis sent, the
``examples`` Hypothesis ran).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from xml.etree import ElementTree

from harness import BENCH, Plot, Result, Table, Target, save

REPO = BENCH.parent
ENVDIR = REPO / ".nox"


@dataclass(frozen=True)
class Run:
    label: str
    wall: float
    sessions: dict[str, tuple[str, float]]  # name -> (result, seconds)
    cases: int  # generated cases run, over every cell and driver
    drawn: int  # of which each cell drew afresh (a driver repeats its cell's draw)


def nox(where: Path, sessions: list[str], *extra: str) -> tuple[float, Path]:
    report = Path(tempfile.mkdtemp(prefix="servicematrix-matrix-")) / "nox.json"
    command = [sys.executable, "-m", "nox", "--envdir", str(ENVDIR), "--report", str(report)]
    command += [*extra, "-s", *sessions]
    print(f"matrix: in {where}: {' '.join(command[3:])}", flush=True)
    began = time.perf_counter()
    subprocess.run(command, cwd=where, check=False)
    return time.perf_counter() - began, report


def generated(reports: Path, seeded: bool) -> tuple[int, int]:
    """(cases run, cases drawn afresh) over the cells' JUnit XML under ``reports``.

    Unseeded (derandomized) cells all draw the same cases: they count once, as the most
    any cell drew."""
    run, draws = 0, []
    for xml in reports.glob("junit-integration-*.xml"):
        per_driver: dict[str, int] = {}
        for case in ElementTree.parse(xml).getroot().iter("testcase"):  # noqa: S314 - ours
            found = {p.get("name"): p.get("value") for p in case.iter("property")}
            count = int(float(found.get("cases") or found.get("examples") or 0))
            run += count
            # Both drivers of a cell draw from its one seed: the sync run's draw is the cell's.
            if count and "[sync" in (case.get("name") or ""):
                per_driver[case.get("name", "")] = count
        draws.append(sum(per_driver.values()))
    return run, (sum(draws) if seeded else max(draws, default=0))


def measure(label: str, where: Path, sessions: list[str]) -> Run:
    shutil.rmtree(where / "reports", ignore_errors=True)
    wall, report = nox(where, sessions)
    entries = json.loads(report.read_text())["sessions"] if report.exists() else []
    shutil.rmtree(report.parent, ignore_errors=True)
    done = {
        (e.get("signatures") or [e["name"]])[0]: (e["result"], float(e["duration"]))
        for e in entries
    }
    # A configuration whose cells draw their own cases seeds them through this variable.
    seeded = "SHOP_FUZZ_SEED" in (where / "noxfile.py").read_text()
    return Run(label, wall, done, *generated(where / "reports", seeded))


def build(old: Run, new: Run, ref: str, sessions: list[str]) -> Result:
    def row(run: Run) -> list[str]:
        ran = [s for r, s in run.sessions.values() if r != "skipped"] or [0.0]
        passed = sum(r == "success" for r, _ in run.sessions.values())
        return [
            run.label,
            f"{run.wall:.0f} s",
            f"{statistics.median(ran):.1f} s",
            f"{passed} of {len(run.sessions)}",
            str(run.cases),
            str(run.drawn),
        ]

    names = sorted(set(old.sessions) | set(new.sessions))
    each = [
        [n, *(f"{r.sessions[n][1]:.1f} s {r.sessions[n][0]}" if n in r.sessions else "-"
              for r in (old, new))]
        for n in names
    ]  # fmt: skip
    times = old.wall / new.wall
    both_pass = all(r == "success" for run in (old, new) for r, _ in run.sessions.values())
    return Result(
        "matrix",
        "The integration matrix under nox",
        f"python bench/matrix.py --against {ref} --sessions {' '.join(map(repr, sessions))}",
        f"{len(new.sessions)} sessions in {new.wall:.0f} s, against {old.wall:.0f} s for the "
        f"configuration of {ref}: {times:.2f}x.",
        [
            Table(
                "the whole matrix, one nox invocation each",
                [
                    "configuration",
                    "wall",
                    "median session",
                    "passed",
                    "generated cases run",
                    "drawn afresh",
                ],
                [row(old), row(new)],
            ),
            Table("each session (nox's report)", ["session", ref, "this checkout"], each),
        ],
        [
            Target(
                "nox -s integration, wall against the earlier configuration",
                "half or less",
                f"{new.wall:.0f} s against {old.wall:.0f} s ({times:.2f}x)",
                times >= 2 and both_pass,
                "" if both_pass else "not every session passed",
            ),
            Target(
                "generated cases across the matrix, drawn afresh",
                "at least as many as before",
                f"{new.drawn} against {old.drawn} (run: {new.cases} against {old.cases})",
                new.drawn >= old.drawn,
            ),
        ],
        [
            Plot(
                "matrix.png",
                "nox -s integration: each session",
                "session",
                "seconds",
                "bar",
                {
                    run.label: [
                        [n.partition("(")[2].rstrip(")"), s] for n, (_, s) in run.sessions.items()
                    ]
                    for run in (old, new)
                },
            )
        ],
        [
            "Both configurations share one nox envdir, made ready first; neither creates "
            "virtualenvs while timed.",
            "Drawn afresh: the cases a cell's own seed drew (a plain, derandomized draw is "
            "the same in every cell, so counts once); a cell's two drivers share its draw.",
        ],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--against", required=True, help="git ref of the earlier configuration")
    parser.add_argument("--sessions", nargs="+", default=["integration"])
    args = parser.parse_args()
    begun = time.perf_counter()
    old_tree = Path(tempfile.mkdtemp(prefix="servicematrix-matrix-old-")) / "repo"
    subprocess.run(
        ["git", "worktree", "add", "--quiet", "--detach", str(old_tree), args.against],
        cwd=REPO,
        check=True,
    )
    try:
        # Untimed: every virtualenv exists after it.
        shutil.rmtree(nox(REPO, args.sessions, "--install-only")[1].parent, ignore_errors=True)
        old = measure(args.against, old_tree, args.sessions)
        new = measure("this checkout", REPO, args.sessions)
    finally:
        subprocess.run(
            ["git", "worktree", "remove", "--force", str(old_tree)], cwd=REPO, check=False
        )
        shutil.rmtree(old_tree.parent, ignore_errors=True)
    save(build(old, new, args.against, args.sessions), time.perf_counter() - begun)


if __name__ == "__main__":
    main()
