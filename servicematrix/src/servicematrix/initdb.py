"""initdb once per PostgreSQL binary and reuse the result.

A cluster is initialised into a temporary directory beside the cache entry and then
renamed into place, so concurrent workers never see half a cluster: whoever renames
first wins, the others discard theirs.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from servicematrix.binaries import Installation
from servicematrix.errors import StartupError
from servicematrix.info import new_password
from servicematrix.processes import as_server_account, data_root, give_to_server, last_line
from servicematrix.schema import Schema

SUPERUSER = "postgres"
# UTF8, or psycopg hands back bytes; 1 MB WAL segments make the copy per worker small.
_INITDB_OPTIONS = (
    "--auth-host=scram-sha-256",
    "--auth-local=trust",
    "--encoding=UTF8",
    "--locale=C.UTF-8",
    "--wal-segsize=1",
    "--no-sync",
)
# Part of the cache key, so a change of options never reuses an old cluster.
_LAYOUT = ",".join(_INITDB_OPTIONS)


@dataclass(frozen=True)
class Template:
    """An initialised cluster to copy, and the superuser password it was made with."""

    datadir: Path
    password: str


def default_cache_dir() -> Path:
    """The per-user cache: ``$XDG_CACHE_HOME/servicematrix`` or ``~/.cache/servicematrix``."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "servicematrix"


def template_for(
    install: Installation, cache_dir: Path | None, track: Callable[[Path], None]
) -> Template:
    """The cached cluster for ``install``, made now if missing; ``track`` sees temp dirs."""
    entry = _entry(install, cache_dir)
    if not (entry / "password").exists():
        _initdb(install, entry, track)
    return _template(entry)


def schema_cluster(
    install: Installation, cache_dir: Path | None, schema: Schema
) -> Template | None:
    """The cached cluster that already holds ``schema``, or None."""
    entry = _entry(install, cache_dir) / schema.name
    return _template(entry) if (entry / "password").exists() else None


def keep_schema_cluster(
    install: Installation,
    cache_dir: Path | None,
    schema: Schema,
    cluster: Template,
    track: Callable[[Path], None],
) -> None:
    """Cache the stopped ``cluster`` as ``schema``'s; the project's older ones go."""
    parent = _entry(install, cache_dir)
    sibling = Path(tempfile.mkdtemp(prefix=".schema-", dir=parent))
    track(sibling)
    try:
        _place(cluster, sibling, parent / schema.name)
    finally:
        shutil.rmtree(sibling, ignore_errors=True)
    for old in parent.iterdir():
        if schema.stale(old.name):
            shutil.rmtree(old, ignore_errors=True)


def _entry(install: Installation, cache_dir: Path | None) -> Path:
    root = (cache_dir or default_cache_dir()) / "postgres"
    root.mkdir(parents=True, exist_ok=True)
    key = hashlib.sha256(f"{_LAYOUT}:{install.binary.resolve()}:{install.version}".encode())
    return root / f"{install.version}-{key.hexdigest()[:12]}"


def _template(entry: Path) -> Template:
    return Template(entry / "data", (entry / "password").read_text().strip())


def _place(cluster: Template, sibling: Path, entry: Path) -> None:
    """Copy ``cluster`` beside ``entry``, then rename it into place: whoever renames first
    wins, and a reader never sees half a cluster."""
    shutil.copytree(cluster.datadir, sibling / "data", symlinks=True)
    (sibling / "password").write_text(cluster.password + "\n")
    os.chmod(sibling / "password", 0o600)
    try:
        sibling.rename(entry)
    except OSError:
        if not (entry / "password").exists():
            raise


def _initdb(install: Installation, entry: Path, track: Callable[[Path], None]) -> None:
    # initdb runs as the server account, which may not reach the cache (root's home):
    # it works in the data root, and the result is copied into the cache beside the
    # entry, then renamed into place.
    staging = Path(tempfile.mkdtemp(prefix="servicematrix-initdb-", dir=data_root()))
    track(staging)
    sibling = Path(tempfile.mkdtemp(prefix=".initdb-", dir=entry.parent))
    track(sibling)
    try:
        password = new_password()
        pwfile = staging / "pwfile"
        pwfile.write_text(password + "\n")
        give_to_server(staging)
        log = staging / "initdb.log"
        with log.open("wb") as out:
            result = subprocess.run(
                [
                    install.bindir / "initdb",
                    f"--pgdata={staging / 'data'}",
                    f"--username={SUPERUSER}",
                    f"--pwfile={pwfile}",
                    *_INITDB_OPTIONS,
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                check=False,
                **as_server_account(),
            )
        if result.returncode != 0:
            raise StartupError(f"initdb of PostgreSQL {install.version} failed: {last_line(log)}")
        _place(Template(staging / "data", password), sibling, entry)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(sibling, ignore_errors=True)
