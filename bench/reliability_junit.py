"""pytest runs whose results are read back from their JUnit XML, record_property values too."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from xml.etree import ElementTree

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class TestCase:
    """One test case of a JUnit XML file: how it ended and what it recorded."""

    name: str
    group: str
    outcome: str
    seconds: float
    message: str = ""
    properties: dict[str, str] = field(default_factory=dict)


@dataclass
class Run:
    """A pytest run: exit code, duration, its test cases, and the tail of its output."""

    exit_code: int | None
    seconds: float
    cases: list[TestCase]
    tail: str


def parse(xml: Path) -> list[TestCase]:
    """Every test case in ``xml``, with its outcome and properties."""
    cases = []
    for case in ElementTree.parse(xml).getroot().iter("testcase"):  # noqa: S314 - our own XML
        outcome, message = "passed", ""
        for kind in ("failure", "error", "skipped"):
            found = case.find(kind)
            if found is not None:
                outcome = {"failure": "failed", "error": "error"}.get(kind, kind)
                text = (found.get("message") or found.text or "").strip()
                message = text.splitlines()[0][:200] if text else ""
                break
        properties = {
            p.get("name", ""): p.get("value", "") for p in case.iter("property") if p.get("name")
        }
        # A collection error has no class name: its name is the module's.
        name = case.get("name", "")
        group = case.get("classname") or name
        seconds = float(case.get("time") or 0)
        cases.append(TestCase(name, group, outcome, seconds, message, properties))
    return cases


def run_pytest(args: list[str], xml: Path, timeout: float = 3600.0) -> Run:
    """``python -m pytest ARGS --junitxml XML`` from the repository root."""
    argv = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", f"--junitxml={xml}", *args]
    started = time.monotonic()
    try:
        done = subprocess.run(
            argv,
            cwd=ROOT,
            env=os.environ.copy(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        code: int | None = done.returncode
        output = done.stdout + done.stderr
    except subprocess.TimeoutExpired as exc:
        code, output = None, f"timed out after {timeout:.0f} s: {exc.stdout!s}"
    seconds = time.monotonic() - started
    cases = parse(xml) if xml.exists() else []
    return Run(code, seconds, cases, "\n".join(output.strip().splitlines()[-5:]))
