"""``python -m servicematrix check``: can this machine serve a PostgreSQL x Redis pair?

Prints the backend that would serve it and exits 0, or prints the one-line reason why
nothing can and exits 3. Like a run, it first pulls the images the docker backend lacks,
with progress on stderr. Settings resolve as in pytest (options, then environment).
"""

from __future__ import annotations

import argparse
import os
import sys

from servicematrix.backends import select_backend
from servicematrix.config import SETTINGS, Config
from servicematrix.errors import ServiceMatrixError

UNSERVABLE = 3


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m servicematrix")
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("check", help="say which backend can serve the settings")
    for s in SETTINGS:
        check.add_argument(s.cli, dest=s.stem, help=s.help)
    args = parser.parse_args(argv)
    try:
        config = Config.resolve(
            cli=lambda stem: getattr(args, stem), ini=lambda _: None, env=os.environ
        )
        print(select_backend(config, report=_progress).name)
    except ServiceMatrixError as exc:
        print(exc)
        return UNSERVABLE
    return 0


def _progress(line: str) -> None:
    print(f"servicematrix: {line}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
