"""Schema templates: the schema a project's setup builds, kept per content hash.

The files named by the ``schema_from`` setting (migrations, the conftest holding the
setup fixture) hash to a key. The first worker that needs the schema runs the setup
and its backend keeps the result as a template: a cached cluster (local), a committed
image (docker) or a template database (external). Every later worker and run whose
files hash the same starts from the template and runs no setup at all. Builders take a
lock per key, so the others wait on it, not on a clock.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from servicematrix.errors import ConfigError

# How a worker's database got its schema, as its report says.
REUSED = "reused"  # started from the template: no setup ran
ADOPTED = "adopted"  # the template appeared while it waited, and replaced its database
BUILT = "built"  # it ran the setup and kept the result as the template
SETUP = "setup"  # it ran the setup and kept nothing (no schema_from, or nowhere to keep)


@dataclass(frozen=True)
class Schema:
    """The content hash of what the schema is made from, and the project it belongs to."""

    project: str
    key: str

    @property
    def name(self) -> str:
        """A name safe as a database name, an image tag and a directory."""
        return f"sm_schema_{self.project}_{self.key}"

    @property
    def prefix(self) -> str:
        """What this project's templates share, so old ones can be pruned."""
        return f"sm_schema_{self.project}_"

    def stale(self, name: str) -> bool:
        """True for a template of this project made from other files."""
        return name.startswith(self.prefix) and name != self.name


def schema_for(patterns: Sequence[str], root: Path) -> Schema | None:
    """The schema the files matching ``patterns`` (globs under ``root``) make, or None."""
    if not patterns:
        return None
    files: set[Path] = set()
    for pattern in patterns:
        matched = {p for p in root.glob(pattern) if p.is_file() and "__pycache__" not in p.parts}
        if not matched:
            raise ConfigError(
                f"--servicematrix-schema-from: {pattern!r} matches no file under {root}: name "
                "the files the schema is made from, e.g. migrations/**/*.py conftest.py (or set "
                "servicematrix_schema_from / SERVICEMATRIX_SCHEMA_FROM)"
            )
        files |= matched
    digest = hashlib.sha256()
    for path in sorted(files):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return Schema(_project(root), digest.hexdigest()[:16])


def templates_of(root: Path) -> str:
    """What the name of every template of the project at ``root`` begins with."""
    return Schema(_project(root), "").prefix


def _project(root: Path) -> str:
    return hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:8]


@contextmanager
def build_lock(schema: Schema, directory: Path, where: str) -> Iterator[None]:
    """Held by the one worker on this host that builds ``schema`` for ``where`` (a backend
    and a server version); the others block here."""
    directory.mkdir(parents=True, exist_ok=True)
    fd = os.open(directory / f"{schema.name}-{where}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock
