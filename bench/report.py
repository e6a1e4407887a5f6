"""Render saved results into a markdown report and its PNG plots.

    python bench/report.py --out bench/RESULTS.md isolation provision scaling nox_setup matrix
    python bench/report.py --out bench/RELIABILITY.md reliability

Each name is a ``bench/results/<name>.json`` written by a benchmark script; plots go to
``bench/plots/``. Nothing is measured here: every figure comes from those files.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from harness import BENCH, RESULTS, Plot, Result, Table, Target, load, parser

PLOTS = BENCH / "plots"


def markdown_table(table: Table) -> list[str]:
    right = {"median", "min", "max", "n"}
    aligns = ["---:" if c in right or c.startswith("x ") else "---" for c in table.columns]
    lines = [f"**{table.caption}**", ""] if table.caption else []
    lines += ["| " + " | ".join(table.columns) + " |", "| " + " | ".join(aligns) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in table.rows]
    return [*lines, ""]


def target_rows(results: list[Result]) -> list[str]:
    lines = ["| what | target | measured | met |", "| --- | --- | --- | --- |"]
    targets: list[Target] = [t for r in results for t in r.targets]
    for t in targets:
        met = "yes" if t.met else f"**no**: {t.why or 'no reason recorded'}"
        lines.append(f"| {t.what} | {t.target} | {t.measured} | {met} |")
    return lines


def render_plot(plot: Plot) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    if plot.kind == "bar":
        _bars(ax, plot)
    else:
        for label, points in plot.series.items():
            ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=label)
        ax.set_ylim(bottom=0)
    if plot.log_y:
        ax.set_yscale("log")
    ax.set_title(plot.title)
    ax.set_xlabel(plot.xlabel)
    ax.set_ylabel(plot.ylabel)
    if len(plot.series) > 1:
        ax.legend()
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    PLOTS.mkdir(exist_ok=True)
    path = PLOTS / plot.file
    fig.savefig(path)
    plt.close(fig)
    return path


def _bars(ax: Any, plot: Plot) -> None:
    """Grouped bars; a point [label, y, low, high] gets a low-high error bar."""
    categories = list(dict.fromkeys(str(p[0]) for ps in plot.series.values() for p in ps))
    width = 0.8 / len(plot.series)
    for i, (label, points) in enumerate(plot.series.items()):
        by_category = {str(p[0]): p for p in points}
        xs = [c + i * width for c, name in enumerate(categories) if name in by_category]
        ys = [by_category[n][1] for n in categories if n in by_category]
        errors = None
        if all(len(by_category[n]) == 4 for n in categories if n in by_category):
            lows = [by_category[n][1] - by_category[n][2] for n in categories if n in by_category]
            highs = [by_category[n][3] - by_category[n][1] for n in categories if n in by_category]
            errors = [lows, highs]
        ax.bar(xs, ys, width, yerr=errors, capsize=3, label=label)
    offset = width * (len(plot.series) - 1) / 2
    ax.set_xticks([c + offset for c in range(len(categories))])
    ax.set_xticklabels(categories, rotation=20, ha="right")


_HOST = ("cpu", "cores", "memory", "os")


def section(result: Result, out: Path, first: Result) -> list[str]:
    lines = [f"## {result.title}", ""]
    if result.summary:
        lines += [result.summary, ""]
    m = result.machine
    # A result measured on another host than the report's first says on which.
    host = (
        ""
        if all(m.get(k) == first.machine.get(k) for k in _HOST)
        else (f" on {m.get('cpu', '?')}, {m.get('cores', '?')} cores, {m.get('os', '?')}")
    )
    lines += [
        f"Measured {result.date}{host} in {result.wall_seconds:.0f} s, "
        f"commit {m.get('commit', '?')}. Reproduce: `{result.command}`",
        "",
    ]
    for table in result.tables:
        lines += markdown_table(table)
    for plot in result.plots:
        path = render_plot(plot)
        link = Path(os.path.relpath(path, out.parent)).as_posix()
        lines += [f"![{plot.title}]({link})", ""]
    lines += [f"- {note}" for note in result.notes]
    return [*lines, ""] if result.notes else lines


def machine_line(results: list[Result]) -> str:
    m = results[0].machine
    dates = sorted(r.date for r in results)
    when = dates[0] if dates[0] == dates[-1] else f"{dates[0]} to {dates[-1]}"
    return (
        f"Machine (unless a section names another): {m.get('cpu', '?')}, "
        f"{m.get('cores', '?')} cores, {m.get('memory', '?')}, "
        f"{m.get('os', '?')}, Python {m.get('python', '?')}. Measured {when}."
    )


def render(title: str, names: list[str], out: Path) -> None:
    if missing := [n for n in names if not (RESULTS / f"{n}.json").exists()]:
        raise SystemExit(
            f"report: no results for {', '.join(missing)}: run bench/<name>.py for each first"
        )
    results = [load(RESULTS / f"{n}.json") for n in names]
    lines = [
        f"# {title}",
        "",
        "Generated by `bench/report.py` from `bench/results/*.json`; every figure below "
        "was measured by the script named in its section.",
        "",
        machine_line(results),
        "",
        "## Targets",
        "",
        *target_rows(results),
        "",
    ]
    for result in results:
        lines += section(result, out, results[0])
    out.write_text("\n".join(lines).rstrip() + "\n")
    print(f"wrote {out}")


def main() -> None:
    args = parser(__doc__)
    args.add_argument("--out", type=Path, required=True)
    args.add_argument("--title", default="Benchmarks")
    args.add_argument("names", nargs="+")
    chosen = args.parse_args()
    render(chosen.title, chosen.names, chosen.out.resolve())


if __name__ == "__main__":
    main()
