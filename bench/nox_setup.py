"""Set-up time of a nox session's virtualenv: the uv backend against virtualenv and pip.

    python bench/nox_setup.py                     # session tests, 3 runs of each
    python bench/nox_setup.py --session tests --runs 5

Each run is ``nox -s SESSION --install-only --force-venv-backend BACKEND`` in a fresh
temporary envdir: a new virtualenv with the project, its extras and its dependency group
installed, nothing run. The backends alternate run by run after an untimed warm-up run
of each, so uv's and pip's caches (the user's own) are warm, as on a developer's machine
after the first session; both tools may still ask the configured index for metadata.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time

from harness import ROOT, STAT_COLUMNS, Plot, Result, Stat, Table, parser, save

BACKENDS = ("uv", "virtualenv")
NOTES = [
    "Caches warm: one untimed run of each backend first; uv's and pip's caches are the user's "
    "own, and both tools may still ask the configured index for metadata.",
    "Each run uses a new temporary --envdir, removed afterwards; the backends alternate run by "
    "run. Both compile bytecode (the noxfile sets UV_COMPILE_BYTECODE).",
]


def setup_once(session: str, backend: str) -> float:
    """Seconds for nox to create and fill the session's virtualenv in a fresh envdir."""
    with tempfile.TemporaryDirectory(prefix=f"servicematrix-nox-{backend}-") as envdir:
        command = [sys.executable, "-m", "nox", "-s", session, "--install-only"]
        command += ["--envdir", envdir, "--force-venv-backend", backend]
        began = time.perf_counter()
        done = subprocess.run(command, cwd=ROOT, capture_output=True, check=False)
        seconds = time.perf_counter() - began
    if done.returncode != 0:
        print((done.stdout + done.stderr).decode()[-4000:])
        sys.exit(f"nox_setup: nox -s {session} with {backend} failed: see its output above")
    return seconds


def main() -> None:
    args = parser(__doc__)
    args.add_argument("--session", default="tests", help="the nox session to set up")
    args.add_argument("--runs", type=int, default=3, help="timed runs of each backend")
    chosen = args.parse_args()
    if shutil.which("uv") is None:
        sys.exit("nox_setup: uv is not on PATH: install it (pip install uv) and try again")
    for backend in BACKENDS:
        print(f"nox_setup: warm-up, {backend} (untimed)", flush=True)
        setup_once(chosen.session, backend)
    samples: dict[str, list[float]] = {b: [] for b in BACKENDS}
    for i in range(chosen.runs):
        for backend in BACKENDS:
            samples[backend].append(setup_once(chosen.session, backend))
            print(f"nox_setup: run {i + 1}/{chosen.runs}, {backend}: {samples[backend][-1]:.2f} s")
    stats = {b: Stat(s) for b, s in samples.items()}
    uv, pip, session = stats["uv"].median, stats["virtualenv"].median, chosen.session
    summary = f"Creating the {session} session's virtualenv takes {uv:.1f} s with uv and "
    summary += f"{pip:.1f} s with virtualenv and pip ({pip / uv:.1f}x), median."
    result = Result("nox_setup", "nox session set-up: uv against virtualenv and pip", summary)
    rows = [[name, *s.cells(2), f"{s.median / uv:.1f}x"] for name, s in stats.items()]
    caption = f"nox -s {session} --install-only in a fresh envdir, caches warm"
    result.tables.append(Table(caption, ["backend", *STAT_COLUMNS, "x uv"], rows))
    points = {"set-up": [[n, s.median, s.min, s.max] for n, s in stats.items()]}
    title = f"nox session set-up ({session}), caches warm"
    result.plots.append(
        Plot("nox_setup.png", title, "", "seconds (median, min-max)", "bar", points)
    )
    result.notes = NOTES
    save(result)


if __name__ == "__main__":
    main()
