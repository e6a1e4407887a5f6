"""Reliability figures, read back from the JUnit XML of the test runs that measured them.

    python bench/reliability.py reports/junit-reliability.xml reports/junit-faults-*.xml

Nothing runs here. ``nox -s reliability`` runs the tests: the plugin's ``reliability``
tests (SIGKILL at seeded random moments, two runs at once), its security and bad
configuration tests, and shop's service fault and fuzz tests on each backend; each
writes JUnit XML with the figures it recorded (``record_property``). This script turns
those records into bench/results/reliability.json, which bench/report.py renders.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from pathlib import Path
from xml.etree import ElementTree

from harness import Result, Table, Target, parser, save


@dataclass
class Case:
    """One test case: the run (its JUnit file), module, name, outcome, seconds, and what
    it recorded."""

    run: str
    module: str
    name: str
    outcome: str
    seconds: float
    message: str = ""
    properties: dict[str, str] = field(default_factory=dict)


def parse(xml: Path) -> list[Case]:
    cases = []
    for case in ElementTree.parse(xml).getroot().iter("testcase"):  # noqa: S314 - our own XML
        outcome, message = "passed", ""
        for kind in ("failure", "error", "skipped"):
            found = case.find(kind)
            if found is not None:
                outcome = {"failure": "failed", "error": "error"}.get(kind, kind)
                text = (found.get("message") or found.text or "").strip()
                message = text.splitlines()[0][:160] if text else ""
                break
        properties = {p.get("name", ""): p.get("value", "") for p in case.iter("property")}
        module = (case.get("classname") or "").rpartition(".")[2] or case.get("name", "")
        seconds = float(case.get("time") or 0)
        name = case.get("name", "")
        cases.append(Case(xml.stem, module, name, outcome, seconds, message, properties))
    return cases


def passing(cases: list[Case]) -> tuple[str, bool, str]:
    """(measured, met, why) for "every case passes"."""
    bad = [c for c in cases if c.outcome not in ("passed", "skipped")]
    ran = [c for c in cases if c.outcome != "skipped"]
    why = "; ".join(f"{c.name}: {c.message}" for c in bad) or ("" if ran else "none ran")
    return f"{len(ran) - len(bad)} of {len(ran)} passed", bool(ran) and not bad, why


def outcome_table(caption: str, cases: list[Case], figures: list[str]) -> Table:
    rows = [
        [c.run.removeprefix("junit-"), c.name, c.outcome, f"{c.seconds:.2f} s"]
        + [c.properties.get(f, "").replace("|", "\\|") for f in figures]
        for c in cases
    ]
    return Table(caption, ["run", "test", "outcome", "time", *figures], rows)


def backend_of(case: Case) -> str:
    return "docker" if "docker" in case.name else "local"


def kills(cases: list[Case], result: Result) -> None:
    for backend in ("local", "docker"):
        mine = [c for c in cases if backend_of(c) == backend and c.outcome != "skipped"]
        if not mine:
            continue
        cleaned = [float(c.properties["clean_after_s"]) for c in mine if c.outcome == "passed"]
        live = sum(c.properties.get("servers_were_up") == "True" for c in mine)
        left = [c for c in mine if c.outcome != "passed"]
        measured = f"{len(left)} of {len(mine)}; {live} hit a live run"
        if cleaned:
            measured += f"; clean after median {statistics.median(cleaned):.2f} s, "
            measured += f"max {max(cleaned):.2f} s"
        result.targets.append(
            Target(
                f"nothing of a SIGKILLed run left after 15 s ({backend})",
                f"0 of {len(mine)} kills",
                measured,
                not left,
                "; ".join(f"{c.name}: {c.message}" for c in left),
            )
        )
    figures = ["workers", "killed_after_s", "servers_were_up", "suite_had_ended", "clean_after_s"]
    result.tables.append(outcome_table("SIGKILL at seeded random moments", cases, figures))


def total(cases: list[Case], prop: str) -> tuple[str, bool, str]:
    """(measured, met, why) for a target of 0 for ``prop`` summed over ``cases``."""
    values = [(c.name, int(float(c.properties[prop]))) for c in cases if prop in c.properties]
    count = sum(v for _, v in values)
    why = "; ".join(f"{name}: {v}" for name, v in values if v) or f"no test recorded {prop}"
    return f"{count} over {len(values)} tests", bool(values) and count == 0, why


def build(cases: list[Case]) -> Result:
    result = Result(
        name="reliability",
        title="Reliability: kills, runs at once, bad input, service faults, security",
        command="nox -s reliability",
    )

    def module(*names: str) -> list[Case]:
        return [c for c in cases if c.module in names]

    sections: list[tuple[str, list[Case], str, list[str]]] = [
        ("security: loopback only, passwords per run and masked, private dirs",
         module("test_security"), "Security checks on real servers", []),
        ("bad configuration: one line naming the fix, before any test",
         module("test_bad_config", "test_errors"), "Bad configuration", []),
        ("two runs at once: both pass, nothing shared",
         [c for c in module("test_reliability") if "two_runs" in c.name], "Two runs at once",
         ["things_shared"]),
    ]  # fmt: skip
    for what, found, caption, figures in sections:
        if found:
            result.targets.append(Target(what, "every case passes", *passing(found)))
            result.tables.append(outcome_table(caption, found, figures))
    kills([c for c in module("test_reliability") if "sigkill" in c.name], result)
    faults = module("test_faults", "test_schema", "test_properties", "test_cache_properties")
    if faults:
        result.targets.append(Target("service fault and fuzz tests", "every test passes",
                                     *passing(faults)))  # fmt: skip
        result.targets.append(Target("5xx responses to generated requests", "0",
                                     *total(faults, "status_5xx")))  # fmt: skip
        result.targets.append(Target("stale reads under faults", "0", *total(faults, "stale")))
        names = sorted({k for c in faults for k in c.properties} - {"status_codes"})
        result.tables.append(outcome_table("Service faults and fuzzing", faults, names))
    met = sum(t.met for t in result.targets)
    result.summary = f"{met} of {len(result.targets)} targets met."
    return result


def main() -> None:
    args = parser(__doc__)
    args.add_argument("junit", nargs="+", type=Path)
    chosen = args.parse_args()
    if missing := [str(p) for p in chosen.junit if not p.exists()]:
        raise SystemExit(f"reliability: no JUnit XML at {', '.join(missing)}: run the tests first")
    cases = [c for path in chosen.junit for c in parse(path)]
    result = build(cases)
    result.wall_seconds = sum(c.seconds for c in cases)  # the time the tests took
    save(result)


if __name__ == "__main__":
    main()
