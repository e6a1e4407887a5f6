"""Warm servers (``warm``): a worker's servers left running for the next run to reuse.

On a developer's machine, a run's servers (local processes or docker containers) stay up
after it. The next run whose settings shape the same servers (backend, versions, images,
address) takes them instead of starting its own, after emptying them: every database but
``postgres`` dropped, every schema of it dropped, unless it holds the very schema the run
wants (its ``schema_from`` key), which is then made again from the copy taken right after
its setup; Redis FLUSHALLed, which is ours to do on a server we started. Under CI, and
on the external backend, nothing is kept warm.

Each set of servers has an entry under ``<cache_dir>/warm`` and a lock beside it. A run
holds the lock for as long as it uses the servers, so two runs never share them: one
that finds every entry locked starts its own. A detached watcher per entry stops the
servers once they have stayed unused for the idle time, or once the run that took them
died without giving them back.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import select
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from servicematrix.config import Config
from servicematrix.info import Role, ServerInfo
from servicematrix.kept import Servers, blank_name
from servicematrix.reset import DROP_DATABASE


def off_reason(config: Config, backend: str) -> str | None:
    """Why this run keeps nothing warm although asked, or None."""
    if os.environ.get("CI", "").lower() not in ("", "0", "false", "no"):
        return "warm servers are off under CI"
    if backend == "external":
        return "warm servers are for the local and docker backends: external ones are not ours"
    return None


def key_of(config: Config, backend: str) -> str:
    """Everything that shapes a worker's servers, hashed."""
    shaping = {
        "backend": backend,
        "pg": config.pg_major,
        "redis": str(config.redis_version),
        "images": [config.pg_image, config.redis_image, config.valkey_image, config.image_prefix],
        "address": config.docker_address,
        "tmp_dir": str(config.tmp_dir or ""),
    }
    return hashlib.sha256(json.dumps(shaping, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class Entry:
    """One warm set of servers: how to reach and how to stop them."""

    path: Path
    servers: dict[Role, ServerInfo]
    stop: Servers
    # The schema_from key of the schema in its database, if it was made from one.
    schema: str | None = None
    generation: int = 0
    released: float = 0.0
    idle_seconds: float = 0.0

    def save(self) -> None:
        body = dataclasses.asdict(self)
        body.pop("path")
        # The servers' passwords are in it: readable by their owner only.
        descriptor = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as out:
            json.dump(body, out)

    @classmethod
    def load(cls, path: Path) -> Entry | None:
        try:
            body = json.loads(path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None
        stop = body.pop("stop")
        stop["pids"] = {int(pid): sig for pid, sig in stop["pids"].items()}
        servers = {role: ServerInfo(**info) for role, info in body.pop("servers").items()}
        return cls(path, servers, Servers(**stop), **body)

    def remove(self) -> None:
        self.stop.stop()
        self.path.unlink(missing_ok=True)
        _lock_path(self.path).unlink(missing_ok=True)
        _wake(self.path, self.generation)


def _wake_path(entry: Path, generation: int) -> Path:
    """The FIFO the watcher of ``generation`` waits on."""
    return entry.with_suffix(f".{generation}.wake")


def _wake(entry: Path, generation: int) -> None:
    """Tell the watcher of ``generation`` to look again (its entry changed or went)."""
    try:
        fd = os.open(_wake_path(entry, generation), os.O_WRONLY | os.O_NONBLOCK)
    except OSError:  # no such watcher, or not listening yet: it looks when it starts
        return
    with contextlib.suppress(BlockingIOError):
        os.write(fd, b"\n")
    os.close(fd)


def _lock_path(entry: Path) -> Path:
    return entry.with_suffix(".lock")


def _lock(entry: Path, *, wait: bool) -> int | None:
    """A descriptor holding ``entry``'s lock, or None if another process holds it."""
    fd = os.open(_lock_path(entry), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


class Pool:
    """One worker's side: takes a warm entry for its key, or makes one when it ends."""

    def __init__(self, directory: Path, key: str, name: str, idle_minutes: float) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self._directory, self._key = directory, key
        self._idle = idle_minutes * 60
        self._new = directory / f"{key}-{name}.json"
        self._fd: int | None = None
        self.entry: Entry | None = None

    def take(self) -> Entry | None:
        """An unused entry for this key, locked for this run; None if every one is in use."""
        for path in sorted(self._directory.glob(f"{self._key}-*.json")):
            fd = _lock(path, wait=False)
            if fd is None:
                continue
            entry = Entry.load(path)
            if entry is None:  # its watcher stopped it meanwhile
                os.close(fd)
                continue
            self._fd, self.entry = fd, entry
            return entry
        return None

    def drop(self) -> None:
        """Stop the taken entry's servers (they failed to reset) and forget it."""
        if self.entry is not None:
            self.entry.remove()
            self.entry = None

    def give_back(
        self, servers: Mapping[Role, ServerInfo], stop: Servers, schema: str | None
    ) -> None:
        """Leave ``servers`` running for the next run, and a watcher to stop them if none
        comes within the idle time."""
        if self.entry is None:
            fd = _lock(self._new, wait=True)
            entry = Entry(self._new, dict(servers), stop)
        else:
            fd, entry = self._fd, self.entry
            entry.servers, entry.stop = dict(servers), stop
        entry.schema, entry.generation = schema, entry.generation + 1
        entry.released, entry.idle_seconds = time.time(), self._idle
        entry.save()
        _wake(entry.path, entry.generation - 1)
        with contextlib.suppress(FileExistsError):
            os.mkfifo(_wake_path(entry.path, entry.generation), 0o600)
        # Detached, and no Popen to warn that it still runs when this process ends.
        argv = [sys.executable, "-m", "servicematrix.warm", str(entry.path), str(entry.generation)]
        null = [(os.POSIX_SPAWN_OPEN, fd, os.devnull, os.O_RDWR, 0) for fd in (0, 1, 2)]
        os.posix_spawn(sys.executable, argv, os.environ, file_actions=null, setsid=True)
        self.release_lock(fd)

    def discard(self) -> None:
        """The taken servers now hold something else (kept data): no longer warm."""
        if self.entry is not None:
            self.entry.path.unlink(missing_ok=True)
            _wake(self.entry.path, self.entry.generation)
            self.entry = None
        self.release_lock(self._fd)

    def release_lock(self, fd: int | None) -> None:
        if fd is not None:
            os.close(fd)
        self._fd = None


def reset_pg(server: ServerInfo, keep_schema: bool) -> None:
    """Empty a warm PostgreSQL. With ``keep_schema``, its database is made again from the
    copy taken once its schema was set up (seeded rows and all); otherwise every other
    database is dropped, and in ``postgres`` every schema, and ``public`` made again."""
    import psycopg
    from psycopg import sql

    database = str(server.database)
    blank = blank_name(database)
    keep = (database, "template0", "template1", *([blank] if keep_schema else []))
    # From template1 where the database itself is dropped and made again.
    login = dataclasses.replace(server, database="template1" if keep_schema else database)
    with psycopg.connect(login.url(), autocommit=True, connect_timeout=5) as c:
        others = c.execute(
            "SELECT datname FROM pg_database WHERE datname <> ALL(%s)", (list(keep),)
        ).fetchall()
        for (other,) in others:
            c.execute(sql.SQL(DROP_DATABASE).format(sql.Identifier(other)))
        if keep_schema:
            made, copy = sql.Identifier(database), sql.Identifier(blank)
            c.execute(sql.SQL(DROP_DATABASE).format(made))
            c.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(made, copy))
            return
        schemas = c.execute(
            "SELECT nspname FROM pg_namespace WHERE nspname NOT LIKE 'pg\\_%' "
            "AND nspname <> 'information_schema'"
        ).fetchall()
        for (schema,) in schemas:
            c.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))
        c.execute("CREATE SCHEMA public")


def reset_redis(server: ServerInfo) -> None:
    import redis

    with redis.Redis.from_url(server.url(), socket_connect_timeout=5) as client:
        client.flushall()


def watch(path: Path, generation: int) -> None:
    """Stop ``path``'s servers once they have been idle for their idle time, unless a run
    took them and gave them back meanwhile (its own watcher then takes over)."""
    wake = _wake_path(path, generation)
    # Read and write: a FIFO whose last writer closed would otherwise read as ready forever.
    fd = os.open(wake, os.O_RDWR | os.O_NONBLOCK)
    try:
        while True:
            entry = Entry.load(path)
            if entry is None or entry.generation != generation:
                return
            remaining = entry.released + entry.idle_seconds - time.time()
            if remaining <= 0:
                break
            if select.select([fd], [], [], remaining)[0]:
                os.read(fd, 512)
        _stop_unless_taken(path, generation)
    finally:
        os.close(fd)
        wake.unlink(missing_ok=True)


def _stop_unless_taken(path: Path, generation: int) -> None:
    # Blocks while a run uses them; a run that died without giving them back leaves the
    # generation as it was, and its servers are stopped.
    fd = _lock(path, wait=True)
    try:
        entry = Entry.load(path)
        if entry is not None and entry.generation == generation:
            entry.remove()
    finally:
        if fd is not None:
            os.close(fd)


def entries(directory: Path) -> list[Entry]:
    """Every warm set of servers under ``directory``."""
    found = (Entry.load(path) for path in sorted(directory.glob("*.json")))
    return [entry for entry in found if entry is not None]


def stop_all(directory: Path) -> list[str]:
    """Stop every warm set of servers not in use; their entries' names."""
    stopped = []
    for path in sorted(directory.glob("*.json")):
        fd = _lock(path, wait=False)
        if fd is None:
            continue
        try:
            entry = Entry.load(path)
            if entry is not None:
                entry.remove()
                stopped.append(path.stem)
        finally:
            os.close(fd)
    return stopped


def main(argv: list[str]) -> int:
    """The watcher: ``python -m servicematrix.warm ENTRY GENERATION``."""
    watch(Path(argv[0]), int(argv[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
