"""The PostgreSQL x Redis matrix, ``nox -s integration``: this checkout against an earlier
configuration of it, in one run.

    python bench/matrix.py                             # the whole matrix, against 415a863
    python bench/matrix.py --against 415a863 --sessions "integration(pg='15', redis='7')"

The earlier configuration is a git worktree of ``--against`` in a temporary folder. Both
use one nox envdir (this checkout's .nox), made ready first by an untimed
``nox --install-only`` pass, so neither pays for creating virtualenvs; each then runs its
sessions as its own noxfile says, timed from outside. Per-session seconds come from
nox's ``--report`` JSON; the generated cases each cell ran come from the JUnit XML its
pytest wrote (the ``cases`` Schemathesis sent, the ``examples`` Hypothesis ran).
"""

from __future__ import annotations

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

from harness import ROOT, Plot, Result, Table, Target, parser, save

ENVDIR = ROOT / ".nox"
# The configuration before the matrix was made fast: the figures compare against it.
EARLIER = "415a863"


@dataclass(frozen=True)
class Run:
    label: str
    wall: float
    sessions: dict[str, tuple[str, float]]  # name -> (result, seconds)
    cases: int  # generated cases run, over every cell and driver
    drawn: int  # of which each cell drew afresh (a driver repeats its cell's draw)


def nox(where: Path, sessions: list[str], *extra: str) -> tuple[float, list[dict[str, str]]]:
    """Wall seconds of one nox invocation in ``where``, and its report's sessions."""
    with tempfile.TemporaryDirectory(prefix="servicematrix-matrix-") as scratch:
        report = Path(scratch) / "nox.json"
        command = [sys.executable, "-m", "nox", "--envdir", str(ENVDIR), "--report", str(report)]
        command += [*extra, "-s", *sessions]
        print(f"matrix: in {where}: {' '.join(command[3:])}", flush=True)
        began = time.perf_counter()
        subprocess.run(command, cwd=where, check=False)
        wall = time.perf_counter() - began
        return wall, json.loads(report.read_text())["sessions"] if report.exists() else []


def generated(reports: Path, seeded: bool) -> tuple[int, int]:
    """(cases run, cases drawn afresh) over the cells' JUnit XML under ``reports``.

    Unseeded (derandomized) cells all draw the same cases: they count once, as the most
    any cell drew. Both drivers of a cell draw from its one seed: the sync run's counts."""
    run, draws = 0, []
    for xml in reports.glob("junit-integration-*.xml"):
        drawn = 0
        for case in ElementTree.parse(xml).getroot().iter("testcase"):  # noqa: S314 - ours
            found = {p.get("name"): p.get("value") for p in case.iter("property")}
            count = int(float(found.get("cases") or found.get("examples") or 0))
            run += count
            drawn += count if "[sync" in (case.get("name") or "") else 0
        draws.append(drawn)
    return run, (sum(draws) if seeded else max(draws, default=0))


def measure(label: str, where: Path, sessions: list[str]) -> Run:
    shutil.rmtree(where / "reports", ignore_errors=True)
    wall, entries = nox(where, sessions)
    done = {
        (e.get("signatures") or [e["name"]])[0]: (e["result"], float(e["duration"]))
        for e in entries
    }
    # A configuration whose cells draw their own cases seeds them through this variable.
    seeded = "SHOP_FUZZ_SEED" in (where / "noxfile.py").read_text()
    return Run(label, wall, done, *generated(where / "reports", seeded))


def row(run: Run) -> list[str]:
    ran = [s for r, s in run.sessions.values() if r != "skipped"] or [0.0]
    passed = sum(r == "success" for r, _ in run.sessions.values())
    return [run.label, f"{run.wall:.0f} s", f"{statistics.median(ran):.1f} s",
            f"{passed} of {len(run.sessions)}", str(run.cases), str(run.drawn)]  # fmt: skip


def build(old: Run, new: Run, ref: str) -> Result:
    names = sorted(set(old.sessions) | set(new.sessions))
    each = [
        [n, *(f"{r.sessions[n][1]:.1f} s {r.sessions[n][0]}" if n in r.sessions else "-"
              for r in (old, new))]
        for n in names
    ]  # fmt: skip
    times = old.wall / new.wall
    both_pass = all(r == "success" for run in (old, new) for r, _ in run.sessions.values())
    bars = {
        run.label: [[n.partition("(")[2].rstrip(")"), s] for n, (_, s) in run.sessions.items()]
        for run in (old, new)
    }
    columns = ["configuration", "wall", "median session", "passed", "generated cases run"]
    why = "" if times >= 2 else f"this checkout took {new.wall / old.wall:.0%} of it"
    return Result(
        name="matrix",
        title="The integration matrix under nox",
        summary=f"{len(new.sessions)} sessions in {new.wall:.0f} s, against {old.wall:.0f} s "
        f"for the configuration of {ref}: {times:.2f}x.",
        tables=[
            Table(
                "the whole matrix, one nox invocation each",
                [*columns, "drawn afresh"],
                [row(old), row(new)],
            ),
            Table("each session (nox's report)", ["session", ref, "this checkout"], each),
        ],
        targets=[
            Target(
                "nox -s integration, wall against the earlier configuration",
                "half or less",
                f"{new.wall:.0f} s against {old.wall:.0f} s ({times:.2f}x)",
                times >= 2 and both_pass,
                why if both_pass else "not every session passed",
            ),
            Target(
                "generated cases across the matrix, drawn afresh",
                "at least as many as before",
                f"{new.drawn} against {old.drawn} (run: {new.cases} against {old.cases})",
                new.drawn >= old.drawn,
            ),
        ],
        plots=[
            Plot(
                "matrix.png", "nox -s integration: each session", "session", "seconds", "bar", bars
            )
        ],
        notes=[
            "Both configurations share one nox envdir, made ready first; neither creates "
            "virtualenvs while timed.",
            "Drawn afresh: the cases a cell's own seed drew (a plain, derandomized draw is "
            "the same in every cell, so counts once); a cell's two drivers share its draw.",
        ],
    )


def main() -> None:
    args = parser(__doc__)
    args.add_argument("--against", default=EARLIER, help="git ref of the earlier configuration")
    args.add_argument("--sessions", nargs="+", default=["integration"])
    chosen = args.parse_args()
    with tempfile.TemporaryDirectory(prefix="servicematrix-matrix-old-") as scratch:
        old_tree = Path(scratch) / "repo"
        add = ["git", "worktree", "add", "--quiet", "--detach", str(old_tree), chosen.against]
        subprocess.run(add, cwd=ROOT, check=True)
        try:
            nox(ROOT, chosen.sessions, "--install-only")  # untimed: every virtualenv exists
            old = measure(chosen.against, old_tree, chosen.sessions)
            new = measure("this checkout", ROOT, chosen.sessions)
        finally:
            remove = ["git", "worktree", "remove", "--force", str(old_tree)]
            subprocess.run(remove, cwd=ROOT, check=False)
    save(build(old, new, chosen.against))


if __name__ == "__main__":
    main()
