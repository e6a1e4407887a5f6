"""What a run was asked for and what actually served it, for headers and summaries."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from servicematrix.backends import Choice
from servicematrix.config import Config
from servicematrix.handoff import Handoff
from servicematrix.info import Role, ServerInfo
from servicematrix.provision import Worker
from servicematrix.schema import Schema


@dataclass
class RunState:
    """Per pytest process: the config, the run id shared by all workers, what served."""

    config: Config
    run_id: str
    choice: Choice | None = None
    worker: Worker | None = None
    handoff: Handoff | None = None
    # The servers the choice was made for.
    roles: set[Role] = field(default_factory=set)
    own: dict[str, Any] | None = None
    # What the project's schema is made from (schema_from), if it says.
    schema: Schema | None = None
    workers: list[dict[str, Any]] = field(default_factory=list)

    def header(self) -> str:
        c = self.config
        drivers = ",".join(c.drivers) if c.drivers else "each installed"
        return (
            f"servicematrix: backend={c.backend} pg={c.pg_major} redis={c.redis_version} "
            f"drivers={drivers} run={self.run_id}"
        )

    def record(self, worker_id: str) -> None:
        """Remember what served this process, if it started servers and they came up."""
        if self.worker is None or not self.worker.roles or self.choice is None:
            return
        try:
            servers = list(self.worker.ready().values())
        except Exception:  # the tests already reported it; the run still ends cleanly
            return
        self.own = {
            "worker": worker_id,
            "run": self.run_id,
            "backend": self.choice.name,
            "why": self.choice.why,
            "described": [s.describe() for s in servers],
            "servers": [_public(s) for s in servers],
            "seconds": self.worker.seconds,
            "schema": self.worker.schema_report,
            # Names only: the URLs to open them hold passwords (python -m servicematrix kept).
            "kept": [t.name for t in self.worker.keeper.record.tests] if self.worker.keeper else [],
            # Whether its servers were taken warm, started (to be left warm), or why not.
            "warm": self.worker.warm_note,
        }
        self.workers.append(self.own)


def _public(info: ServerInfo) -> dict[str, Any]:
    fields = asdict(info)
    fields.pop("password")
    return fields


def write_report(state: RunState) -> None:
    """The JSON report, for tools that summarise many runs (the nox matrix)."""
    if state.config.report is None:
        return
    state.config.report.parent.mkdir(parents=True, exist_ok=True)
    body = {"run": state.run_id, "workers": sorted(state.workers, key=lambda w: str(w["worker"]))}
    state.config.report.write_text(json.dumps(body, indent=2) + "\n")


def summary_lines(state: RunState) -> list[str]:
    """Which backend served and why, then one line per worker, sorted by worker id."""
    workers = sorted(state.workers, key=lambda w: str(w["worker"]))
    chosen = sorted({f"backend {w['backend']} ({w['why']})" for w in workers})
    kept = sum(len(w.get("kept", ())) for w in workers)
    if kept:
        chosen.append(
            f"kept the data of {kept} failed test(s): `python -m servicematrix kept` lists "
            "them, with URLs to open them; `python -m servicematrix kept --remove all` "
            "removes them"
        )
    return chosen + [
        f"{w['worker']}: {'; '.join(w['described'])}; ready in {w['seconds']:.2f} s"
        + _schema_line(w.get("schema"))
        + (f"; warm: {w['warm']}" if w.get("warm") else "")
        for w in workers
    ]


def _schema_line(schema: dict[str, Any] | None) -> str:
    """How the worker's database got its schema, e.g. '; schema 1f2e… reused in 0.00 s'."""
    if not schema:
        return ""
    key = f" {schema['key']}" if schema["key"] else ""
    return f"; schema{key} {schema['how']} in {schema['seconds']:.2f} s"
