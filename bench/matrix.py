"""Wall time of the PostgreSQL x Redis matrix, ``nox -s integration``, and of each session.

    python bench/matrix.py             # all 20 sessions
    python bench/matrix.py --quick     # one pair: integration(pg='15', redis='7')
    python bench/matrix.py --sessions "integration(pg='13', redis='6')" lint

nox runs as a subprocess with its output streamed to this terminal. Per-session times
come from nox's ``--report`` JSON, which has each session's duration in seconds (nox's
own log rounds them to words such as "2 minutes"); the servers' report each session
writes under reports/ tells which backend served it. Virtualenvs are reused as the
noxfile configures, so a session's time includes its (re)install step.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from common import BENCH, Plot, Result, Table, save

REPO = BENCH.parent
QUICK_PAIR = "integration(pg='15', redis='7')"


@dataclass(frozen=True)
class Session:
    """One nox session of the run, as nox's report has it."""

    name: str
    result: str
    seconds: float
    backend: str


def run_nox(sessions: list[str], report: Path) -> float:
    """Run nox on ``sessions``, its output on this terminal; the wall time in seconds."""
    command = [sys.executable, "-m", "nox", "--report", str(report), "-s", *sessions]
    print(f"matrix: {' '.join(command[1:])}", flush=True)
    began = time.perf_counter()
    try:
        done = subprocess.run(command, cwd=REPO, check=False)
    except FileNotFoundError:
        sys.exit(f"matrix: cannot run {sys.executable}: use the python that has nox installed")
    wall = time.perf_counter() - began
    if not report.exists():
        sys.exit(f"matrix: nox exited with {done.returncode} before writing its report: see above")
    return wall


def served_by(args: dict[str, str], since: float) -> str:
    """The backends that served one integration session, from its servers report."""
    redis = args.get("redis", "")
    tag = f"redis{redis}" if redis.isdigit() else redis.replace("-", "")
    path = REPO / "reports" / f"servers-integration-pg{args.get('pg')}-{tag}.json"
    if not path.exists() or path.stat().st_mtime < since:
        return ""
    workers = json.loads(path.read_text()).get("workers", [])
    return ", ".join(sorted({w.get("backend", "?") for w in workers}))


def load_sessions(report: Path, since: float) -> list[Session]:
    sessions = []
    for entry in json.loads(report.read_text())["sessions"]:
        args = entry.get("args") or {}
        name = (entry.get("signatures") or [entry["name"]])[0]
        backend = served_by(args, since)
        sessions.append(Session(name, entry["result"], float(entry["duration"]), backend))
    return sessions


def short(name: str) -> str:
    """ "15/7" for "integration(pg='15', redis='7')", "15/vk8" for valkey-8: short bar labels."""
    values = [
        pair.partition("=")[2].strip().strip("'\"").replace("valkey-", "vk")
        for pair in name.partition("(")[2].rstrip(")").split(",")
    ]
    return "/".join(v for v in values if v) or name


def virtualenvs() -> set[str]:
    """The session virtualenvs nox has made so far."""
    envdir = REPO / ".nox"
    return {p.name for p in envdir.iterdir() if p.is_dir()} if envdir.exists() else set()


def build_result(wall: float, sessions: list[Session], selected: list[str], created: int) -> Result:
    ran = [s for s in sessions if s.result != "skipped"] or sessions
    slowest = max(ran, key=lambda s: s.seconds)
    fastest = min(ran, key=lambda s: s.seconds)
    passed = sum(s.result == "success" for s in sessions)
    overview = Table(
        "the matrix as one nox invocation",
        ["measure", "value"],
        [
            ["total wall", f"{wall:.1f} s"],
            ["slowest session", f"{slowest.seconds:.1f} s ({slowest.name})"],
            ["fastest session", f"{fastest.seconds:.1f} s ({fastest.name})"],
            ["median session", f"{statistics.median(s.seconds for s in ran):.1f} s"],
            ["sessions passed", f"{passed} of {len(sessions)}"],
        ],
    )
    each = Table(
        "each session (nox's report)",
        ["session", "result", "seconds", "backend"],
        [[s.name, s.result, f"{s.seconds:.1f}", s.backend or "-"] for s in sessions],
    )
    plot = Plot(
        "matrix.png",
        "nox -s integration: duration of each session",
        "PostgreSQL/Redis (vk: Valkey)",
        "seconds",
        "bar",
        {"session": [[short(s.name), s.seconds] for s in sessions]},
    )
    return Result(
        "matrix",
        "The integration matrix under nox",
        f"python bench/matrix.py --sessions {' '.join(repr(s) for s in selected)}",
        f"{len(sessions)} sessions in {wall:.0f} s; the slowest, {slowest.name}, took "
        f"{slowest.seconds:.0f} s; {passed} passed.",
        [overview, each],
        [],
        [plot],
        [
            "Sessions run one after another, each with pytest -n auto; virtualenvs are reused "
            "(the noxfile's default), so each session's time includes its install step; "
            f"{created} of them did not exist yet and were created within their session.",
            "Per-session seconds are nox's own measurement, from its --report JSON.",
        ],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sessions", nargs="+", default=["integration"], help="nox sessions (default: all pairs)"
    )
    parser.add_argument("--quick", action="store_true", help=f"only {QUICK_PAIR}")
    args = parser.parse_args()
    selected = [QUICK_PAIR] if args.quick else args.sessions
    started = time.time()
    before = virtualenvs()
    with tempfile.TemporaryDirectory(prefix="servicematrix-matrix-") as tmp:
        report = Path(tmp) / "nox-report.json"
        wall = run_nox(selected, report)
        sessions = load_sessions(report, started)
    created = len(virtualenvs() - before)
    if not sessions:
        sys.exit("matrix: nox ran no session: check the --sessions names with nox -l")
    save(build_result(wall, sessions, selected, created), time.time() - started)


if __name__ == "__main__":
    main()
