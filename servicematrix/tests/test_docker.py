"""The docker backend: per-worker containers, labels, loopback ports, no leftovers."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from servicematrix.backends.docker import images
from servicematrix.config import Config

DOCKER = ("--servicematrix-backend=docker", "--servicematrix-pg=15", "--servicematrix-redis=7")
CLEANUP_SECONDS = 15.0
PROJECTS = Path(__file__).parent / "projects"


def run_containers(client: Any, run_id: str) -> list[str]:
    """Ids of ``run_id``'s containers; sparse, so one removed meanwhile is no error."""
    label = {"label": f"io.servicematrix.run={run_id}"}
    return [c.id for c in client.containers.list(all=True, sparse=True, filters=label)]


def run_id_of(output: str) -> str:
    match = re.search(r"servicematrix: backend=\S+ .* run=(\w+)", output)
    assert match, output
    return match.group(1)


@pytest.mark.parametrize("address", ["bridge", "loopback"])
def test_two_workers_two_of_each_none_after(
    inner: pytest.Pytester, engine: Any, address: str
) -> None:
    out = inner.mkdir("seen")
    # --dist each: both workers run the test, and each records its own containers
    # while they are certainly alive (a worker that finishes first removes its own).
    inner.makepyfile(
        f"""
        import json, pathlib, docker
        from servicematrix.plugin import STATE

        def test_containers(pg_server, redis_server, request):
            run = request.config.stash[STATE].run_id
            worker = request.config.workerinput["workerid"]
            labels = ["io.servicematrix.run=" + run, "io.servicematrix.worker=" + worker]
            client = docker.from_env()
            ids = [c.id for c in client.containers.list(sparse=True, filters={{"label": labels}})]
            found = [client.api.inspect_container(i) for i in ids]
            client.close()
            bindings = [
                b for c in found for bs in c["NetworkSettings"]["Ports"].values() for b in bs or []
            ]
            pathlib.Path({str(out)!r}, worker).write_text(json.dumps({{
                "run": run,
                "containers": ids,
                "images": sorted(c["Config"]["Image"] for c in found),
                "bindings": [[b["HostIp"], b["HostPort"]] for b in bindings],
                "addresses": [pg_server.host, redis_server.host],
            }}))
            assert pg_server.backend == redis_server.backend == "docker"
        """
    )
    result = inner.runpytest(
        "-n", "2", "--dist", "each", *DOCKER, f"--servicematrix-docker-address={address}"
    )
    if address == "bridge" and "cannot route" in result.stdout.str():
        pytest.skip("this host has no route to the engine's bridge network")
    result.assert_outcomes(passed=2)
    seen = [json.loads(p.read_text()) for p in sorted(out.iterdir())]
    assert len(seen) == 2
    bindings = [tuple(b) for w in seen for b in w["bindings"]]
    if address == "bridge":
        # A holder container per worker owns the network both servers share; nothing is
        # published, and each worker's servers have an address of their own.
        # (The holder runs one of the two images, whichever server starts first.)
        assert [sorted(set(w["images"])) for w in seen] == [["postgres:15", "redis:7"]] * 2
        assert len({c for w in seen for c in w["containers"]}) == 6
        assert bindings == []
        assert [len(set(w["addresses"])) for w in seen] == [1, 1]
        assert len({a for w in seen for a in w["addresses"]}) == 2
    else:
        assert [w["images"] for w in seen] == [["postgres:15", "redis:7"]] * 2
        assert len({c for w in seen for c in w["containers"]}) == 4
        assert {host for host, _ in bindings} == {"127.0.0.1"}
        assert len({port for _, port in bindings}) == len(bindings) == 4
    assert run_containers(engine, seen[0]["run"]) == []


def start_blocking_run(directory: Path, name: str) -> tuple[subprocess.Popen[bytes], Path]:
    directory.mkdir()
    (directory / "test_block.py").write_text(
        "import os, pathlib, time\n\n"
        "def test_block(pg_server, redis_server):\n"
        "    pathlib.Path('started').write_text(str(os.getpid()))\n"
        "    deadline = time.monotonic() + 120\n"
        "    while time.monotonic() < deadline:\n"
        "        time.sleep(0.05)\n"
    )
    (directory / "pytest.ini").write_text("[pytest]\naddopts = -p no:cacheprovider\n")
    log = directory / f"{name}.log"
    argv = [sys.executable, "-m", "pytest", "-n", "2", *DOCKER]
    with log.open("wb") as sink:
        proc = subprocess.Popen(argv, cwd=directory, stdout=sink, stderr=subprocess.STDOUT)
    return proc, log


def wait_until(condition: Any, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def test_kill_9_removes_this_runs_containers_only(inner: pytest.Pytester, engine: Any) -> None:
    runs = [start_blocking_run(inner.path / name, name) for name in ("a", "b")]
    try:
        for name in ("a", "b"):
            wait_until(lambda d=name: (inner.path / d / "started").exists(), f"run {name} started")
        ids = [run_id_of(log.read_text()) for _, log in runs]
        # One test each, which runs once both servers answer: one worker per run has its
        # PostgreSQL and Redis (and, on the bridge path, their network's holder).
        counts = [len(run_containers(engine, i)) for i in ids]
        assert counts[0] == counts[1] in (2, 3), counts
        os.kill(runs[0][0].pid, signal.SIGKILL)
        runs[0][0].wait()
        wait_until(
            lambda: run_containers(engine, ids[0]) == [], "run a's containers gone", CLEANUP_SECONDS
        )
        assert len(run_containers(engine, ids[1])) == counts[1]
    finally:
        for proc, _ in runs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
        # The xdist worker running the blocked test outlives its killed controller.
        for started in inner.path.glob("*/started"):
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(started.read_text()), signal.SIGKILL)


def test_missing_image_is_a_usage_error(inner: pytest.Pytester, engine: Any) -> None:
    inner.makepyfile("def test_a(pg_server):\n    pass\n")
    result = inner.runpytest(*DOCKER, "--servicematrix-pg-image=servicematrix-absent:{version}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stdout.fnmatch_lines(["servicematrix: pulling servicematrix-absent:15 from docker.io*"])
    result.stderr.fnmatch_lines(
        [
            "ERROR: servicematrix: docker backend: could not pull servicematrix-absent:15 from "
            "docker.io*: *; `docker pull servicematrix-absent:15` shows more, or set "
            "servicematrix_image_prefix*"
        ]
    )


def test_a_sync_run_imports_only_what_each_process_needs(
    clean: pytest.Pytester, engine: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The controller asks the engine and checks the images itself, without docker-py; the
    # workers start the servers, and a sync-only suite loads no asyncio stack.
    shutil.copytree(PROJECTS / "controller_imports", clean.path, dirs_exist_ok=True)
    imports = clean.mkdir("imports")
    monkeypatch.setenv("IMPORTS_DIR", str(imports))
    result = clean.runpytest_subprocess("-n", "2", timeout=180)
    result.assert_outcomes(passed=2)
    seen = {p.stem: json.loads(p.read_text()) for p in imports.iterdir()}
    assert seen == {"controller": [], "gw0": [], "gw1": []}


def test_image_names_follow_settings() -> None:
    config = Config.parse({"pg": "16", "redis": "valkey-8", "image_prefix": "mirror.example/lib/"})
    assert images(config) == {
        "pg": "mirror.example/lib/postgres:16",
        "redis": "mirror.example/lib/valkey/valkey:8",
    }


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A real registry on a loopback port (Debian's docker-registry): address and log."""
    binary = shutil.which("docker-registry")
    if binary is None:
        reason = "needs Debian's docker-registry to run a registry on loopback"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{sock.getsockname()[1]}"
    config = tmp_path / "registry.yml"
    config.write_text(
        f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {tmp_path / 'data'}\n"
        f"http:\n  addr: {address}\n"
    )
    log = tmp_path / "registry.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([binary, "serve", str(config)], stdout=out, stderr=out)
    try:
        wait_until(lambda: _answers(f"http://{address}/v2/"), "the registry answers")
        yield address, log
    finally:
        proc.terminate()
        proc.wait()


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1):
            return True
    except OSError:
        return False


def test_missing_image_is_pulled_once_before_the_workers_with_progress(
    inner: pytest.Pytester, engine: Any, registry: tuple[str, Path]
) -> None:
    address, log = registry
    ref = f"{address}/servicematrix-pull/redis:7"
    engine.images.get("redis:7").tag(ref)
    engine.images.push(ref)
    engine.images.remove(ref)
    inner.makepyfile(
        """
        import pytest

        @pytest.mark.parametrize("n", range(4))
        def test_server(redis_server, n):
            assert redis_server.backend == "docker"
        """
    )
    try:
        result = inner.runpytest_subprocess(
            "-n",
            "2",
            *DOCKER,
            f"--servicematrix-redis-image={address}/servicematrix-pull/redis:{{version}}",
        )
    finally:
        with contextlib.suppress(Exception):
            engine.images.remove(ref)
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines(
        [f"servicematrix: pulling {ref} from {address}", f"servicematrix: pulled {ref} (*MB) in *s"]
    )
    assert result.stdout.str().count(f"pulling {ref} from") == 1
    # The registry's access log: the run asked for the image once, not once per worker.
    asked = re.findall(r'"(?:GET|HEAD) /v2/servicematrix-pull/redis/manifests/7 ', log.read_text())
    assert len(asked) == 1, log.read_text()[-2000:]
