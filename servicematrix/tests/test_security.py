"""Security of real servers: loopback only, a password per run, never shown, private dirs."""

from __future__ import annotations

import ipaddress
import json
import os
import stat
from collections.abc import Iterator
from contextlib import ExitStack, closing
from pathlib import Path

import psycopg
import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from servicematrix.backends.docker import DockerBackend
from servicematrix.config import Config
from servicematrix.info import ServerInfo
from servicematrix.provision import Worker, new_run_id

from .support import PG, REDIS

LISTEN = "0A"
LOOPBACK = {"127.0.0.1", "::1"}
# A refused password stays refused: no retries, no back-off.
NO_RETRY = Retry(NoBackoff(), 0)


@pytest.fixture(scope="module", params=["local", "docker", "docker-loopback"])
def shape(request: pytest.FixtureRequest) -> str:
    """Each backend that starts servers of its own, docker on both network paths; docker
    skips without an engine."""
    name = str(request.param)
    if name.startswith("docker"):
        reason = DockerBackend.unavailable(config_for(name))
        if reason:
            if os.environ.get("CI"):
                pytest.fail(f"docker backend unavailable under CI: {reason}")
            pytest.skip(reason)
    return name


@pytest.fixture(scope="module")
def backend(shape: str) -> str:
    return shape.partition("-")[0]


def config_for(shape: str) -> Config:
    backend, _, address = shape.partition("-")
    raw = {"backend": backend, "pg": str(PG), "redis": str(REDIS), "docker_address": address}
    return Config.parse(raw)


@pytest.fixture(scope="module")
def runs(shape: str, backend: str) -> Iterator[list[Worker]]:
    """Two runs' workers on ``backend``, alive together, as two concurrent pytest runs."""
    with ExitStack() as stack:
        workers = [
            stack.enter_context(Worker(config_for(shape), backend, new_run_id(), f"sec{i}"))
            for i in range(2)
        ]
        for worker in workers:
            worker.ready().values()
        yield workers


def passwords(workers: list[Worker]) -> list[str]:
    return [info.password for w in workers for info in w.ready().values()]


def accepts(info: ServerInfo, password: str) -> bool:
    """Whether ``info``'s server lets us in with ``password``."""
    if info.product == "postgresql":
        try:
            psycopg.connect(
                host=info.host, port=info.port, user=info.user, password=password, dbname="postgres"
            ).close()
        except psycopg.OperationalError as exc:
            if "password authentication failed" not in str(exc):
                raise
            return False
        return True
    try:
        with redis.Redis(
            host=info.host, port=info.port, password=password, retry=NO_RETRY
        ) as client:
            client.ping()
    except redis.AuthenticationError:
        return False
    return True


def test_every_run_has_its_own_passwords(runs: list[Worker]) -> None:
    (pg_a, redis_a), (pg_b, redis_b) = (w.ready().values() for w in runs)
    assert pg_a.password != pg_b.password
    assert redis_a.password != redis_b.password
    assert all(len(p) >= 20 for p in passwords(runs))
    for mine, theirs in ((pg_a, pg_b), (pg_b, pg_a), (redis_a, redis_b), (redis_b, redis_a)):
        assert accepts(mine, mine.password)
        assert not accepts(mine, theirs.password)


def test_no_password_is_shown_by_repr_or_str(runs: list[Worker]) -> None:
    shown = " ".join(
        f"{info!r} {info} {info.describe()}" for w in runs for info in w.ready().values()
    )
    assert "***" in shown
    assert not [p for p in passwords(runs) if p in shown]


def test_no_password_is_on_a_command_line(runs: list[Worker]) -> None:
    """/proc/PID/cmdline is readable by every local user."""
    secrets = passwords(runs)
    leaks = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        leaks += [proc.name for p in secrets if p in cmdline]
    assert leaks == []


def decode_address(hex_address: str) -> str:
    """An address from /proc/net/tcp{,6}: 32-bit words in host (little-endian) order."""
    raw = bytes.fromhex(hex_address)
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    return str(ipaddress.ip_address(words))


def listening(net: Path, ports: set[int]) -> set[str]:
    """'address:port' of the listening TCP sockets in ``net`` on ``ports``."""
    found = set()
    for table in ("tcp", "tcp6"):
        for line in (net / table).read_text().splitlines()[1:]:
            fields = line.split()
            address, port = fields[1].split(":")
            if fields[3] != LISTEN:
                continue
            if int(port, 16) in ports:
                found.add(f"{decode_address(address)}:{int(port, 16)}")
    return found


def container_bindings(run_id: str) -> list[tuple[str, int]]:
    """(host address, host port) of every port the run's containers publish."""
    import docker

    label: dict[str, str | list[str] | bool] = {"label": f"io.servicematrix.run={run_id}"}
    with closing(docker.from_env()) as client:
        ports = [c.attrs["NetworkSettings"]["Ports"] for c in client.containers.list(filters=label)]
    return [(b["HostIp"], int(b["HostPort"])) for p in ports for bs in p.values() for b in bs or []]


def test_servers_are_reachable_from_this_host_only(runs: list[Worker], shape: str) -> None:
    for worker in runs:
        pg, redis_info = worker.ready().values()
        if shape == "local":
            # By port, not by the server's descriptors: root in a container (no
            # CAP_SYS_PTRACE) cannot read /proc/PID/fd of the account servers run as.
            for server in (pg, redis_info):
                addresses = listening(Path("/proc/net"), ports={server.port})
                assert addresses, server.describe()
                assert {a.rpartition(":")[0] for a in addresses} <= LOOPBACK, addresses
            continue
        bindings = container_bindings(worker.backend.ctx.run_id)
        if shape == "docker" and pg.host not in LOOPBACK:
            # The bridge path: the servers are reached at their container's own address on
            # the engine's private bridge, and nothing at all is published on the host.
            assert bindings == []
            assert pg.host == redis_info.host
            assert ipaddress.ip_address(pg.host).is_private
            assert (pg.port, redis_info.port) == (5432, 6379)
            continue
        assert sorted(port for _, port in bindings) == sorted([pg.port, redis_info.port])
        assert {host for host, _ in bindings} == {"127.0.0.1"}
        # Whatever listens on the host for those ports (docker-proxy) is loopback too.
        host_side = listening(Path("/proc/net"), ports={pg.port, redis_info.port})
        assert {a.rpartition(":")[0] for a in host_side} <= LOOPBACK, host_side


def test_work_and_data_dirs_are_private(runs: list[Worker], backend: str) -> None:
    secrets = passwords(runs)
    for worker in runs:
        workdir = worker.backend.ctx.workdir
        dirs = [workdir, *(Path(root) / d for root, ds, _ in os.walk(workdir) for d in ds)]
        # Docker servers keep their data inside the container; the work dir is still ours.
        if backend == "local":
            assert {workdir / "postgres", workdir / "redis"} <= set(dirs)
        loose = [
            f"{d} {stat.S_IMODE(d.stat().st_mode):o}" for d in dirs if d.stat().st_mode & 0o077
        ]
        assert loose == []
        files = [Path(root) / f for root, _, fs in os.walk(workdir) for f in fs]
        assert not [f for f in files for p in secrets if p.encode() in f.read_bytes()]


RECORD_AND_SHOW = """
import json, os, pathlib

def test_shows_servers(pg_server, redis_server, sync_engine, sync_redis):
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    secrets = [pg_server.password, redis_server.password]
    pathlib.Path({out!r}, worker + ".json").write_text(json.dumps(secrets))
    print(pg_server, redis_server, pg_server.describe(), redis_server.describe())
    print(sync_engine, sync_engine.url, sync_redis)

def test_fails_showing_servers(pg_server, redis_server, sync_engine, sync_redis):
    servers = (pg_server, redis_server, sync_engine, sync_redis)
    assert pg_server.port == -1, servers
"""


def test_passwords_never_reach_output_or_reports(
    inner: pytest.Pytester, shape: str, backend: str, tmp_path: Path
) -> None:
    out = inner.mkdir("secrets")
    inner.makepyfile(RECORD_AND_SHOW.format(out=str(out)))
    report, junit = tmp_path / "servers.json", tmp_path / "junit.xml"
    result = inner.runpytest(
        *("-n", "2", "--dist", "each", "-v", "-rA", "-l", "--setup-show"),
        f"--servicematrix-backend={backend}",
        f"--servicematrix-docker-address={config_for(shape).docker_address}",
        f"--servicematrix-report={report}",
        f"--junitxml={junit}",
    )
    result.assert_outcomes(passed=2, failed=2)
    secrets = [p for f in out.iterdir() for p in json.loads(f.read_text())]
    assert len(set(secrets)) == 4
    shown = "\n".join([result.stdout.str(), result.stderr.str(), report.read_text()])
    shown += junit.read_text()
    assert "***" in shown
    assert [p for p in secrets if p in shown] == []
