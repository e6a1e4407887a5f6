"""What the xdist controller and its workers tell each other, as files in a private dir.

The controller runs no test and collects nothing, so each worker writes down which
servers its collected tests use; the controller reads that when the first worker has
collected (before any test is scheduled), chooses the backend, pulls what is missing,
and writes the choice down for every worker to read when its first test needs a server.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from servicematrix.info import ROLES, Role
from servicematrix.reaper import Reaper

_CHOICE = "choice.json"


class Handoff:
    """A run's private directory of notes between the controller and its workers."""

    def __init__(self, directory: Path, reaper: Reaper | None = None) -> None:
        self.directory = directory
        self._reaper = reaper

    @classmethod
    def create(cls, run_id: str) -> Handoff:
        """The controller's: a reaper of its own removes the directory should the controller
        be killed before any worker has servers (whose reapers would remove it too)."""
        directory = Path(tempfile.mkdtemp(prefix=f"servicematrix-{run_id}-handoff-"))
        reaper = Reaper()
        reaper.track_path(directory)
        return cls(directory, reaper)

    def write_roles(self, worker_id: str, roles: set[Role]) -> None:
        self._write(f"roles-{worker_id}.json", sorted(roles))

    def roles(self, worker_id: str) -> set[Role]:
        names = self._read(f"roles-{worker_id}.json") or []
        return {role for role in ROLES if role in names}

    def write_choice(self, backend: str, why: str, roles: set[Role]) -> None:
        self._write(_CHOICE, {"backend": backend, "why": why, "roles": sorted(roles)})

    def choice(self) -> tuple[str, str, set[Role]] | None:
        """The controller's choice: backend, why, the servers the tests use; None if none."""
        note = self._read(_CHOICE)
        if note is None:
            return None
        return note["backend"], note["why"], {r for r in ROLES if r in note["roles"]}

    def remove(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)
        if self._reaper is not None:
            self._reaper.close()

    def _write(self, name: str, value: object) -> None:
        # Written whole, then renamed: a reader never sees half a note.
        staging = self.directory / f".{name}"
        staging.write_text(json.dumps(value))
        staging.rename(self.directory / name)

    def _read(self, name: str) -> Any:
        try:
            return json.loads((self.directory / name).read_text())
        except FileNotFoundError:
            return None
