"""What a run was asked for and what actually served it, for headers and summaries."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from servicematrix.config import Config
from servicematrix.errors import ServiceMatrixError
from servicematrix.info import ServerInfo
from servicematrix.provision import Worker


@dataclass
class RunState:
    """Per pytest process: the config, the run id shared by all workers, what served."""

    config: Config
    run_id: str
    backend: str | None
    own: dict[str, Any] | None = None
    workers: list[dict[str, Any]] = field(default_factory=list)

    def header(self) -> str:
        c = self.config
        return (
            f"servicematrix: backend={self.backend or c.backend} pg={c.pg or 'newest'} "
            f"redis={c.redis or 'newest'} drivers={','.join(c.drivers)} run={self.run_id}"
        )

    def record(self, worker_id: str, worker: Worker) -> None:
        """Remember what served this process, if its servers came up."""
        try:
            pg, rd = worker.ready()
        except ServiceMatrixError:
            return
        self.own = {
            "worker": worker_id,
            "backend": pg.backend,
            "postgres": pg.describe(),
            "redis": rd.describe(),
            "servers": [_public(pg), _public(rd)],
            "seconds": worker.seconds,
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
    """One line per worker, sorted by worker id."""
    return [
        f"{w['worker']}: {w['postgres']}; {w['redis']}; ready in {w['seconds']:.2f} s"
        for w in sorted(state.workers, key=lambda w: str(w["worker"]))
    ]
