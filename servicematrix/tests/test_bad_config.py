"""Bad settings: one line naming the problem and the fix, a usage error, and no hang.

test_errors.py covers an unknown PostgreSQL version, a bad Redis value, the external
backend without URLs and a missing Docker socket; these are the rest.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from servicematrix.__main__ import UNSERVABLE, main
from servicematrix.info import ServerInfo

# Engine and login checks time out after 5 s; start-up and imports come on top.
BOUND_SECONDS = 20.0
SECRET = "s3cret-never-shown"


def usage_error_line(result: pytest.RunResult, started: float) -> str:
    """The one line of a usage error, after checking exit code, duration and quiet."""
    assert time.monotonic() - started < BOUND_SECONDS
    assert result.ret == pytest.ExitCode.USAGE_ERROR, result.stdout.str()
    lines = [line for line in result.stderr.lines if line.strip()]
    assert len(lines) == 1, lines
    # Nothing else: no test ran, no traceback; at most pytest's session header came first.
    shown = result.stdout.str()
    assert not any(w in shown for w in ("Traceback", "INTERNALERROR", "ERROR", "passed")), shown
    assert SECRET not in lines[0] + shown
    return lines[0]


def run(inner: pytest.Pytester, *args: str) -> str:
    inner.makepyfile("def test_a(pg_server, redis_server):\n    pass\n")
    started = time.monotonic()
    return usage_error_line(inner.runpytest(*args), started)


@pytest.fixture
def not_docker() -> Iterator[str]:
    """A TCP port that accepts connections and closes them: something, but no engine."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.1)
    done = threading.Event()

    def serve() -> None:
        while not done.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"tcp://127.0.0.1:{listener.getsockname()[1]}"
    done.set()
    thread.join()
    listener.close()


def closed_port() -> int:
    """A loopback port nobody listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        pytest.param(
            ["--servicematrix-backend=local", "--servicematrix-redis=3"],
            "ERROR: servicematrix: local backend: no Redis 3 binaries (*; searched *): "
            "install Redis 3, set servicematrix_redis to a version this machine has, or install"
            " an extra that ships one: servicematrix?redis6 (6)?",
            id="redis-version-without-binaries",
        ),
        pytest.param(
            [f"--servicematrix-pg-url=postgresql://u:{SECRET}@127.0.0.1:notaport/db"],
            "ERROR: servicematrix: --servicematrix-pg-url='postgresql://u:***@127.0.0.1:notaport/db'"
            " is not valid: use a postgresql://user:password@host:port/db URL*",
            id="pg-url-port-not-a-number",
        ),
        pytest.param(
            ["--servicematrix-warm=soon"],
            "ERROR: servicematrix: --servicematrix-warm='soon' is not valid: use no, yes or a "
            "number of idle minutes, e.g. 30 (or set servicematrix_warm / SERVICEMATRIX_WARM)",
            id="warm-not-minutes",
        ),
        pytest.param(
            ["--servicematrix-keep-failed=always"],
            "ERROR: servicematrix: --servicematrix-keep-failed='always' is not valid: use yes or "
            "no (or set servicematrix_keep_failed / SERVICEMATRIX_KEEP_FAILED)",
            id="keep-failed-not-yes-or-no",
        ),
        pytest.param(
            [f"--servicematrix-pg-url=u:{SECRET}@127.0.0.1:5432/db"],
            "ERROR: servicematrix: --servicematrix-pg-url='u:***@127.0.0.1:5432/db' is not valid*",
            id="pg-url-without-scheme",
        ),
        pytest.param(
            ["--servicematrix-redis-url=redis://127.0.0.1:6379/cache"],
            "ERROR: servicematrix: --servicematrix-redis-url='redis://127.0.0.1:6379/cache' is not"
            " valid: use a redis://:password@host:port/N URL, N a database index*",
            id="redis-url-path-not-an-index",
        ),
        pytest.param(
            [f"--servicematrix-redis-url=redis://:{SECRET}@127.0.0.1:99999/0"],
            "ERROR: servicematrix: --servicematrix-redis-url='redis://:***@127.0.0.1:99999/0'*",
            id="redis-url-port-out-of-range",
        ),
        pytest.param(
            [f"--servicematrix-pg-url=postgresql://u:{SECRET}@127.0.0.1:5432/db"],
            "ERROR: servicematrix: external backend: the tests use Redis, which needs a URL: "
            "set --servicematrix-redis-url (ini servicematrix_redis_url, env "
            "SERVICEMATRIX_REDIS_URL)",
            id="one-url-of-two",
        ),
        pytest.param(
            ["--servicematrix-tmp-dir={missing}"],
            "ERROR: servicematrix: --servicematrix-tmp-dir='*' is not valid: "
            "use an existing directory*",
            id="tmp-dir-missing",
        ),
        pytest.param(
            ["--servicematrix-cache-dir={file}/cache"],
            "ERROR: servicematrix: --servicematrix-cache-dir='*' is not valid: use a directory*",
            id="cache-dir-under-a-file",
        ),
        pytest.param(
            ["--servicematrix-report={file}/report.json"],
            "ERROR: servicematrix: --servicematrix-report='*' is not valid*",
            id="report-under-a-file",
        ),
        pytest.param(
            ["--servicematrix-env=PGPORT={{postgres.port}}"],
            'ERROR: servicematrix: the server "postgres" is now called "pg", as in '
            "servicematrix_pg and pg_server: write pg instead (*) (a warning, which "
            "filterwarnings makes an error)",
            id="old-name-under-filterwarnings-error",
        ),
    ],
)
def test_bad_setting_is_one_line(
    inner: pytest.Pytester, tmp_path: Path, args: list[str], expected: str
) -> None:
    (tmp_path / "file").touch()
    paths = {"missing": tmp_path / "missing", "file": tmp_path / "file"}
    line = run(inner, *(a.format(**paths) for a in args))
    pytest.LineMatcher([line]).fnmatch_lines([expected])


@pytest.mark.parametrize(
    ("engine", "detail"),
    [("closed", "cannot connect to {host}: Connection refused"), ("not-docker", "*")],
)
def test_docker_host_that_is_no_engine_is_one_line(
    inner: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
    engine: str,
    detail: str,
) -> None:
    if engine == "closed":
        host = f"tcp://127.0.0.1:{closed_port()}"
    else:
        host = request.getfixturevalue("not_docker")
    monkeypatch.setenv("DOCKER_HOST", host)
    line = run(inner, "--servicematrix-backend=docker")
    expected = (
        "ERROR: servicematrix: docker backend: no Docker engine answers "
        f"({detail.format(host=host)}): start one (`docker info` should answer) or set "
        "servicematrix_backend=local"
    )
    pytest.LineMatcher([line]).fnmatch_lines([expected])


def external_urls(pg: ServerInfo, redis_info: ServerInfo, case: str) -> tuple[str, str]:
    """PostgreSQL and Redis URLs with one thing wrong, as ``case`` says."""
    pg_url, redis_url = pg.url(), redis_info.url()
    if case == "pg-closed-port":
        pg_url = f"postgresql://postgres:{SECRET}@127.0.0.1:{closed_port()}/postgres"
    elif case == "pg-wrong-password":
        pg_url = f"postgresql://{pg.user}:{SECRET}@127.0.0.1:{pg.port}/postgres"
    elif case == "redis-wrong-password":
        redis_url = f"redis://:{SECRET}@127.0.0.1:{redis_info.port}/0"
    elif case == "redis-closed-port":
        redis_url = f"redis://127.0.0.1:{closed_port()}/0"
    return pg_url, redis_url


EXTERNAL_CASES = {
    "pg-closed-port": "*cannot use PostgreSQL at postgresql://postgres:***@127.0.0.1:*: "
    "connection failed: *Connection refused; check --servicematrix-pg-url",
    "pg-wrong-password": "*cannot use PostgreSQL at postgresql://postgres:***@127.0.0.1:*"
    "password authentication failed*; check --servicematrix-pg-url",
    "redis-wrong-password": "*cannot use Redis at redis://:***@127.0.0.1:*/0: "
    "invalid username-password pair*; check --servicematrix-redis-url",
    "redis-closed-port": "*cannot use Redis at redis://127.0.0.1:*/0: *Connection refused*; "
    "check --servicematrix-redis-url",
}


@pytest.mark.parametrize("case", sorted(EXTERNAL_CASES))
def test_external_url_that_cannot_be_used_is_one_line(
    inner: pytest.Pytester, servers: tuple[ServerInfo, ServerInfo], case: str
) -> None:
    pg_url, redis_url = external_urls(*servers, case)
    line = run(inner, f"--servicematrix-pg-url={pg_url}", f"--servicematrix-redis-url={redis_url}")
    assert line.startswith("ERROR: servicematrix: external backend: ")
    pytest.LineMatcher([line]).fnmatch_lines([EXTERNAL_CASES[case]])


@pytest.mark.parametrize("case", sorted(EXTERNAL_CASES))
def test_check_names_the_external_problem_in_one_line(
    capsys: pytest.CaptureFixture[str], servers: tuple[ServerInfo, ServerInfo], case: str
) -> None:
    pg_url, redis_url = external_urls(*servers, case)
    started = time.monotonic()
    code = main(
        ["check", f"--servicematrix-pg-url={pg_url}", f"--servicematrix-redis-url={redis_url}"]
    )
    assert time.monotonic() - started < BOUND_SECONDS
    assert code == UNSERVABLE
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    assert SECRET not in out
    pytest.LineMatcher([out.strip()]).fnmatch_lines([EXTERNAL_CASES[case]])


def test_external_server_of_another_version_is_one_line(
    inner: pytest.Pytester, servers: tuple[ServerInfo, ServerInfo]
) -> None:
    pg, redis_info = servers
    other = "valkey-8" if redis_info.product == "redis" else "redis-7"
    urls = (f"--servicematrix-pg-url={pg.url()}", f"--servicematrix-redis-url={redis_info.url()}")
    pg_line = run(inner, *urls, f"--servicematrix-pg={pg.major + 1}")
    assert f"runs PostgreSQL {pg.major}, but --servicematrix-pg={pg.major + 1} was asked" in pg_line
    redis_line = run(inner, *urls, f"--servicematrix-redis={other}")
    assert (
        f"is {redis_info.product} {redis_info.version}, but --servicematrix-redis={other} was asked"
        in (redis_line)
    )
    assert redis_info.password not in pg_line + redis_line


def test_failure_while_provisioning_is_one_line_per_test(
    inner: pytest.Pytester, servers: tuple[ServerInfo, ServerInfo]
) -> None:
    pg, redis_info = servers
    # The second worker's Redis database index would be 16: past the last one.
    redis_url = redis_info.url().rsplit("/", 1)[0] + "/15"
    inner.makepyfile(
        "import pytest\n\n"
        "@pytest.mark.parametrize('n', range(4))\n"
        "def test_a(redis_server, n):\n    pass\n"
    )
    started = time.monotonic()
    result = inner.runpytest(
        "-n", "2", f"--servicematrix-pg-url={pg.url()}", f"--servicematrix-redis-url={redis_url}"
    )
    assert time.monotonic() - started < BOUND_SECONDS * 2
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    output = result.stdout.str()
    assert "Redis database index 16 for worker gw1 is out of range" in output
    # No exception chain and no traceback: the message alone.
    assert "The above exception" not in output
    assert "During handling" not in output
    assert "Traceback" not in output
