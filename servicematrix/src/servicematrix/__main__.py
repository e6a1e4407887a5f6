"""The command line.

``python -m servicematrix check``: can this machine serve a PostgreSQL x Redis pair?
Prints the backend that would serve it and exits 0, or prints the one-line reason why
nothing can and exits 3. Like a run, it first pulls the images the docker backend lacks,
with progress on stderr.

``python -m servicematrix warm [--stop]``: the servers runs left warm (warm), or stop
those no run is using.

``python -m servicematrix kept [--remove NAME ... | --remove all]``: the failed tests'
data that runs kept (keep_failed), with the URLs to open it; removing the last a run
kept on its own servers stops them.

Settings resolve as in pytest (options, then environment).
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import time

from servicematrix import kept, warm
from servicematrix.backends import select_backend
from servicematrix.config import SETTINGS, Config
from servicematrix.errors import ServiceMatrixError
from servicematrix.initdb import default_cache_dir

UNSERVABLE = 3


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m servicematrix")
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("check", help="say which backend can serve the settings")
    listing = commands.add_parser("kept", help="list or remove failed tests' kept data")
    listing.add_argument(
        "--remove", nargs="+", metavar="NAME", help="remove these (all: every one)"
    )
    warm = commands.add_parser("warm", help="list the warm servers, or stop them")
    warm.add_argument("--stop", action="store_true", help="stop those no run is using")
    for command in (check, listing, warm):
        for s in SETTINGS:
            command.add_argument(s.cli, dest=s.stem, help=s.help)
    args = parser.parse_args(argv)
    try:
        config = Config.resolve(
            cli=lambda stem: getattr(args, stem), ini=lambda _: None, env=os.environ
        )
        if args.command == "kept":
            return _kept(config, args.remove)
        if args.command == "warm":
            return _warm(config, stop=args.stop)
        print(select_backend(config, report=_progress).name)
    except ServiceMatrixError as exc:
        print(exc)
        return UNSERVABLE
    return 0


def _kept(config: Config, remove: list[str] | None) -> int:
    directory = (config.cache_dir or default_cache_dir()) / "kept"
    records = list(kept.records(directory))
    if remove is None:
        for record in records:
            _show(record)
        if not any(record.tests for record in records):
            print(f"nothing is kept (under {directory})")
        return 0
    names = None if remove == ["all"] else set(remove)
    # Checked before anything is removed: a mistyped name loses nothing.
    unknown = set(names or ()) - {t.name for record in records for t in record.tests}
    if unknown:
        print(
            f"nothing is kept as {', '.join(sorted(unknown))}: "
            "`python -m servicematrix kept` lists what is"
        )
        return 1
    for record in records:
        for name in kept.remove(record, names):
            print(f"removed {name}")
    return 0


def _warm(config: Config, *, stop: bool) -> int:
    directory = (config.cache_dir or default_cache_dir()) / "warm"
    if stop:
        for name in warm.stop_all(directory):
            print(f"stopped {name}")
        return 0
    for entry in warm.entries(directory):
        left = entry.released + entry.idle_seconds - time.time()
        servers = "; ".join(info.describe() for info in entry.servers.values())
        print(f"{entry.path.stem}: {servers}; stops after {max(left, 0) / 60:.1f} idle minutes")
    return 0


def _show(record: kept.Record) -> None:
    when = datetime.datetime.fromtimestamp(record.created).strftime("%Y-%m-%d %H:%M")
    for test in record.tests:
        print(f"{test.name}  {test.test}  ({record.backend}, {when})")
        if test.pg:
            print(f"  psql '{test.pg}'")
        if test.redis:
            print(f"  redis-cli -u '{test.redis}'")


def _progress(line: str) -> None:
    print(f"servicematrix: {line}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
