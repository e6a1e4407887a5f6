"""Set-up time of a nox session's virtualenv: the uv backend against virtualenv and pip.

    python bench/nox_setup.py
    python bench/nox_setup.py --quick
    python bench/nox_setup.py --session tests --runs 5

Each run is ``nox -s SESSION --install-only --envdir <fresh temporary dir>
--force-venv-backend BACKEND``: a new virtualenv with the project, its extras and its
dependency group installed, nothing run. The backends alternate run by run after one
untimed warm-up run of each, so uv's and pip's caches (the user's own) are warm, as on a
developer's machine after the first session; packages still come from the configured
index, which both tools may ask for fresh metadata.
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness import BENCH, STAT_COLUMNS, Plot, Result, Stat, Table, save

REPO = BENCH.parent
BACKENDS = ("uv", "virtualenv")


def check_tools() -> None:
    """nox in this python, and uv on PATH (or beside nox), or exit with one line."""
    if importlib.util.find_spec("nox") is None:
        sys.exit(f"nox_setup: nox is not installed in {sys.executable}: pip install nox")
    if importlib.util.find_spec("virtualenv") is None:
        sys.exit(f"nox_setup: virtualenv is not installed in {sys.executable}: pip install nox")
    if shutil.which("uv") is None and importlib.util.find_spec("uv") is None:
        sys.exit("nox_setup: uv is not on PATH: install it (pip install uv) and try again")


def setup_once(session: str, backend: str) -> float:
    """Seconds for nox to create and fill the session's virtualenv in a fresh envdir."""
    envdir = Path(tempfile.mkdtemp(prefix=f"servicematrix-nox-{backend}-"))
    command = [
        sys.executable,
        "-m",
        "nox",
        "-s",
        session,
        "--install-only",
        "--envdir",
        str(envdir),
        "--force-venv-backend",
        backend,
    ]
    try:
        began = time.perf_counter()
        done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=False)
        seconds = time.perf_counter() - began
    finally:
        shutil.rmtree(envdir, ignore_errors=True)
    if done.returncode != 0:
        print(*(done.stdout + done.stderr).splitlines()[-40:], sep="\n")
        sys.exit(f"nox_setup: nox -s {session} with {backend} failed: see its output above")
    return seconds


def measure(session: str, runs: int) -> dict[str, Stat]:
    for backend in BACKENDS:
        print(f"nox_setup: warm-up, {backend} (untimed)", flush=True)
        setup_once(session, backend)
    samples: dict[str, list[float]] = {b: [] for b in BACKENDS}
    for i in range(runs):
        for backend in BACKENDS:
            samples[backend].append(setup_once(session, backend))
            print(f"nox_setup: run {i + 1}/{runs}, {backend}: {samples[backend][-1]:.2f} s")
    return {b: Stat(s) for b, s in samples.items()}


def build_result(session: str, runs: int, stats: dict[str, Stat]) -> Result:
    uv = stats["uv"].median
    table = Table(
        f"nox -s {session} --install-only in a fresh envdir, caches warm",
        ["backend", *STAT_COLUMNS, "x uv"],
        [[name, *s.cells(2), f"{s.median / uv:.1f}x"] for name, s in stats.items()],
    )
    plot = Plot(
        "nox_setup.png",
        f"nox session set-up ({session}), caches warm",
        "",
        "seconds (median, min-max)",
        "bar",
        {"set-up": [[n, s.median, s.min, s.max] for n, s in stats.items()]},
    )
    ratio = stats["virtualenv"].median / uv
    return Result(
        "nox_setup",
        "nox session set-up: uv against virtualenv and pip",
        f"python bench/nox_setup.py --session {session} --runs {runs}",
        f"Creating the {session} session's virtualenv takes {uv:.1f} s with uv and "
        f"{stats['virtualenv'].median:.1f} s with virtualenv and pip ({ratio:.1f}x), median.",
        [table],
        [],
        [plot],
        [
            "Caches warm: one untimed run of each backend first; uv's and pip's caches are "
            "the user's own, and both tools may still ask the configured index for metadata.",
            "Each run uses a new temporary --envdir, removed afterwards; the backends "
            "alternate run by run. Both compile bytecode (the noxfile sets "
            "UV_COMPILE_BYTECODE; pip compiles by default).",
        ],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--session", default="tests", help="the nox session to set up")
    parser.add_argument("--runs", type=int, default=3, help="timed runs of each backend")
    parser.add_argument("--quick", action="store_true", help="one timed run of each")
    args = parser.parse_args()
    runs = 1 if args.quick else args.runs
    check_tools()
    started = time.perf_counter()
    stats = measure(args.session, runs)
    save(build_result(args.session, runs, stats), time.perf_counter() - started)


if __name__ == "__main__":
    main()
