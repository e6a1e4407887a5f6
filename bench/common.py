"""What every benchmark shares: summaries of samples, and one JSON file of results each.

A benchmark script measures, then calls :func:`save` with a :class:`Result`:
tables (with medians, minima, maxima and ratios computed from the samples),
targets (met or missed, with the reason when missed) and plot data.
``bench/report.py`` turns every ``bench/results/*.json`` into ``bench/RESULTS.md``
and the PNG plots; no figure is typed by hand anywhere on the way.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"


@dataclass(frozen=True)
class Stat:
    """Samples of one measurement, in one unit."""

    samples: list[float]
    unit: str = "s"

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def min(self) -> float:
        return min(self.samples)

    @property
    def max(self) -> float:
        return max(self.samples)

    def cells(self, digits: int = 3) -> list[str]:
        """Median, min, max and n as table cells."""
        return [
            *(f"{v:.{digits}f} {self.unit}" for v in (self.median, self.min, self.max)),
            str(len(self.samples)),
        ]


STAT_COLUMNS = ["median", "min", "max", "n"]


@dataclass
class Table:
    caption: str
    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)


@dataclass
class Target:
    """A target from the issue: what, the bound, what was measured, met or not, and why."""

    what: str
    target: str
    measured: str
    met: bool
    why: str = ""


@dataclass
class Plot:
    """A plot rendered by report.py: ``kind`` is "bar" (x are labels) or "line" (x numbers)."""

    file: str
    title: str
    xlabel: str
    ylabel: str
    kind: str
    # label -> [[x, y], ...]; for bars, x is the category label.
    series: dict[str, list[list[Any]]]
    log_y: bool = False


@dataclass
class Result:
    name: str
    title: str
    command: str
    summary: str = ""
    tables: list[Table] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    plots: list[Plot] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    # Filled by save().
    machine: dict[str, str] = field(default_factory=dict)
    date: str = ""
    wall_seconds: float = 0.0


def machine() -> dict[str, str]:
    """What the figures were measured on."""
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        cpu = platform.processor()
    mem = ""
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f"{kb / 1024**2:.0f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return {
        "os": platform.platform(),
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "memory": mem,
        "python": sys.version.split()[0],
        "commit": _git("rev-parse", "--short", "HEAD"),
    }


def _git(*args: str) -> str:
    try:
        return subprocess.run(
            ["git", *args], capture_output=True, text=True, check=True, cwd=BENCH
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def save(result: Result, wall_seconds: float) -> Path:
    """Write ``bench/results/<name>.json`` with the machine and the date."""
    result.machine = machine()
    result.date = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    result.wall_seconds = round(wall_seconds, 1)
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{result.name}.json"
    path.write_text(json.dumps(asdict(result), indent=1) + "\n")
    print(f"wrote {path.relative_to(BENCH.parent)}")
    return path


def load(path: Path) -> Result:
    data = json.loads(path.read_text())
    data["tables"] = [Table(**t) for t in data["tables"]]
    data["targets"] = [Target(**t) for t in data["targets"]]
    data["plots"] = [Plot(**p) for p in data["plots"]]
    return Result(**data)


def ratio(slow: float, fast: float) -> str:
    return f"{slow / fast:.1f}x"
