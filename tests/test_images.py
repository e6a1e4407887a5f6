"""Each stand-in image keeps the official image's contract, extensions included.

Run by `nox -s images` against the images in the engine (ci/build-images.sh builds them).
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
IMAGES = subprocess.run(
    ["bash", str(ROOT / "ci" / "build-images.sh"), "--list"],
    capture_output=True,
    text=True,
    check=True,
).stdout.split()
# What a first migration of a real project asks for.
EXTENSIONS = {"uuid-ossp", "pgcrypto", "citext", "pg_trgm", "hstore"}
# PostgreSQL 16 is in no current Debian suite: its stand-in is the pgserver wheel's
# build, without contrib (the README says so too).
LACKING = {"16": EXTENSIONS}
WAIT_SECONDS = 60.0


@pytest.fixture(scope="module")
def engine() -> Iterator[Any]:
    docker = pytest.importorskip("docker")
    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException as exc:
        if os.environ.get("CI"):
            pytest.fail(f"no Docker engine under CI: {exc}")
        pytest.skip(f"no Docker engine: {exc}")
    with closing(client):
        yield client


@pytest.fixture
def start(engine: Any) -> Iterator[Callable[..., tuple[Any, int]]]:
    started: list[Any] = []

    def run(image: str, port: int, **kwargs: Any) -> tuple[Any, int]:
        container = engine.containers.run(
            image, detach=True, ports={f"{port}/tcp": ("127.0.0.1", None)}, **kwargs
        )
        started.append(container)
        container.reload()
        return container, int(container.ports[f"{port}/tcp"][0]["HostPort"])

    yield run
    for container in started:
        container.remove(force=True, v=True)


def wait_for(probe: Callable[[], Any], what: str) -> Any:
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        try:
            return probe()
        except Exception:
            if time.monotonic() > deadline:
                raise AssertionError(f"{what} after {WAIT_SECONDS:.0f} s") from None
            time.sleep(0.1)


def has(container: Any, command: str) -> bool:
    return bool(container.exec_run(["sh", "-c", f"command -v {command}"]).exit_code == 0)


@pytest.mark.parametrize("image", [i for i in IMAGES if i.startswith("postgres:")])
def test_postgres_contract(start: Callable[..., tuple[Any, int]], image: str) -> None:
    import psycopg

    env = {"POSTGRES_USER": "app", "POSTGRES_PASSWORD": "s3cret", "POSTGRES_DB": "appdb"}
    container, port = start(image, 5432, environment=env)
    url = f"postgresql://app:s3cret@127.0.0.1:{port}/appdb"
    conn = wait_for(lambda: psycopg.connect(url, autocommit=True, connect_timeout=2), image)
    with conn:
        row = conn.execute("SELECT current_user, current_database()").fetchone()
        assert row == ("app", "appdb")
        encoding = conn.execute("SHOW server_encoding").fetchone()
        assert encoding == ("UTF8",)
        major = conn.execute("SHOW server_version_num").fetchone()
        assert major is not None
        assert int(major[0]) // 10000 == int(image.split(":")[1])
        names = {r[0] for r in conn.execute("SELECT name FROM pg_available_extensions")}
        expected = EXTENSIONS - LACKING.get(image.split(":")[1], set())
        assert names & EXTENSIONS == expected
        for extension in sorted(expected):
            conn.execute(f'CREATE EXTENSION "{extension}"')
    assert has(container, "psql")
    assert has(container, "pg_isready")


@pytest.mark.parametrize("image", [i for i in IMAGES if not i.startswith("postgres:")])
def test_redis_contract(start: Callable[..., tuple[Any, int]], image: str) -> None:
    import redis

    container, port = start(image, 6379, command=["--requirepass", "s3cret"])
    client = redis.Redis(host="127.0.0.1", port=port, password="s3cret", socket_timeout=2)
    with client:
        info = wait_for(lambda: client.info("server"), image)
        product = "valkey" if info.get("server_name") == "valkey" else "redis"
        version = str(info.get("valkey_version") or info["redis_version"])
        assert (product, version.split(".", maxsplit=1)[0]) == (
            "valkey" if image.startswith("valkey/") else "redis",
            image.split(":")[1],
        )
        # No protected mode: a client from outside the container may log in.
        assert client.set("k", "v")
    assert has(container, "redis-cli")
