"""Schema templates: built once per content of the files named, reused by later runs.

The inner project (projects/schema_template) makes its schema from SQL files in its
setup fixture and writes down every run of it, so these tests count the setups that
really ran, not what the plugin says it did.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from servicematrix.backends.docker import SCHEMA_REPOSITORY
from servicematrix.info import ServerInfo
from servicematrix.schema import templates_of

from .support import PG

PROJECT = Path(__file__).parent / "projects" / "schema_template"
MORE_SCHEMA = "CREATE TABLE tags (name text PRIMARY KEY);\n"
MORE_TESTS = """
from sqlalchemy import text

def test_the_new_migration_is_there(sync_db_session):
    assert sync_db_session.execute(text("SELECT count(*) FROM tags")).scalar() == 0
"""


class Project:
    """The inner project in a pytester directory, run on one backend."""

    def __init__(self, pytester: pytest.Pytester, options: list[str]) -> None:
        shutil.copytree(PROJECT, pytester.path, dirs_exist_ok=True)
        self.pytester, self.options = pytester, options
        self.log = pytester.path / "setups.log"
        self.report = pytester.path / "servers.json"
        self.templates = templates_of(pytester.path)
        self.cache = pytester.path / "cache"

    def run(self, workers: str, *extra: str) -> tuple[pytest.RunResult, dict[str, str]]:
        """The run's result, and how each worker's database got its schema."""
        result = self.pytester.runpytest_subprocess(
            "-n",
            workers,
            f"--servicematrix-report={self.report}",
            f"--servicematrix-cache-dir={self.cache}",
            *self.options,
            *extra,
            timeout=180,
        )
        workers_seen = json.loads(self.report.read_text())["workers"]
        return result, {w["worker"]: w["schema"]["how"] for w in workers_seen}

    def setups(self) -> int:
        """How many times the setup fixture has run, in every run so far."""
        return len(self.log.read_text().splitlines()) if self.log.exists() else 0

    def change_the_schema(self) -> None:
        (self.pytester.path / "migrations" / "0002_tags.sql").write_text(MORE_SCHEMA)
        (self.pytester.path / "test_tags.py").write_text(MORE_TESTS)


@pytest.fixture
def project(clean: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> Project:
    monkeypatch.setenv("SETUP_LOG", str(clean.path / "setups.log"))
    return Project(clean, ["--servicematrix-backend=local", f"--servicematrix-pg={PG}"])


def test_local_builds_the_schema_once_and_reuses_it_until_a_file_changes(
    project: Project,
) -> None:
    result, how = project.run("2")
    result.assert_outcomes(passed=4)
    # One worker ran the setup; the other waited for it and took its cluster.
    assert sorted(how.values()) in (["adopted", "built"], ["built", "reused"])
    assert project.setups() == 1

    result, how = project.run("2")
    result.assert_outcomes(passed=4)
    assert set(how.values()) == {"reused"}
    assert project.setups() == 1
    result.stdout.fnmatch_lines(["gw*: PostgreSQL *; schema * reused in *"])

    project.change_the_schema()
    result, how = project.run("0")
    result.assert_outcomes(passed=5)
    assert how == {"main": "built"}
    assert project.setups() == 2
    kept = list(project.cache.glob(f"postgres/*/{project.templates}*"))
    assert len(kept) == 1, f"the older template should be gone: {kept}"


def test_without_schema_from_every_worker_runs_the_setup(project: Project) -> None:
    result, how = project.run("2", "-o", "servicematrix_schema_from=")
    result.assert_outcomes(passed=4)
    assert how == {"gw0": "setup", "gw1": "setup"}
    assert project.setups() == 2


def test_a_pattern_that_matches_nothing_is_one_usage_error(project: Project) -> None:
    result = project.pytester.runpytest_subprocess(
        *project.options, "-o", "servicematrix_schema_from=migrations/*.sql alembic/*.py"
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["ERROR: servicematrix: --servicematrix-schema-from: 'alembic/*.py' matches no file *"]
    )
    assert project.setups() == 0


def schema_databases(pg: ServerInfo, prefix: str) -> list[str]:
    with psycopg.connect(pg.url(), autocommit=True) as conn:
        rows = conn.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE %s", (prefix + "%",)
        ).fetchall()
    return [r[0] for r in rows]


def test_external_keeps_its_template_on_the_server_only_when_asked(
    clean: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    servers: tuple[ServerInfo, ServerInfo],
) -> None:
    pg = servers[0]
    monkeypatch.setenv("SETUP_LOG", str(clean.path / "setups.log"))
    project = Project(clean, [f"--servicematrix-pg-url={pg.url()}"])
    prefix = project.templates
    result, how = project.run("2", "--servicematrix-schema-keep=yes")
    result.assert_outcomes(passed=4)
    assert sorted(how.values()) in (["adopted", "built"], ["built", "reused"])
    assert project.setups() == 1
    assert len(schema_databases(pg, prefix)) == 1

    result, how = project.run("2", "--servicematrix-schema-keep=yes")
    result.assert_outcomes(passed=4)
    assert set(how.values()) == {"reused"}
    assert project.setups() == 1

    project.change_the_schema()
    result, how = project.run("0")
    result.assert_outcomes(passed=5)
    assert how == {"main": "built"}
    # The older template was pruned when this one was made; this one, not asked to
    # stay, was dropped at the end.
    assert schema_databases(pg, prefix) == []


@pytest.fixture(params=[False, True], ids=["cluster-in-image", "cluster-in-volume"])
def docker_project(
    clean: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    engine: Any,
    request: pytest.FixtureRequest,
) -> Iterator[Project]:
    """The project on docker, its image's cluster in the image or in a volume."""
    monkeypatch.setenv("SETUP_LOG", str(clean.path / "setups.log"))
    options = ["--servicematrix-backend=docker", "--servicematrix-pg=15"]
    if request.param:  # torn down after this fixture: the templates are its children
        options.append(f"--servicematrix-pg-image={request.getfixturevalue('volume_image')}")
    project = Project(clean, options)
    yield project
    import docker.errors

    for ref in schema_images(engine, project.templates):
        with contextlib.suppress(docker.errors.ImageNotFound):
            engine.images.remove(ref)


def schema_images(client: Any, prefix: str) -> list[str]:
    tags = [t for image in client.images.list(name=SCHEMA_REPOSITORY) for t in image.tags]
    return [t for t in tags if t.split(":")[-1].startswith(prefix)]


@pytest.fixture
def volume_image(engine: Any) -> Iterator[str]:
    """postgres:15 with a volume where its cluster is, as the official images declare."""
    dockerfile = io.BytesIO(b"FROM postgres:15\nVOLUME /var/lib/postgresql/data\n")
    image, _ = engine.images.build(fileobj=dockerfile, tag="servicematrix-test-volume:15", rm=True)
    yield "servicematrix-test-volume:{version}"
    # The schema images committed over it go first, whichever fixture ends first.
    for child in engine.images.list(name=SCHEMA_REPOSITORY):
        if child.attrs.get("Parent") == image.id:
            engine.images.remove(child.id, force=True)
    engine.images.remove(image.id, force=True)


def test_docker_commits_the_schema_as_an_image_and_starts_from_it(
    docker_project: Project, engine: Any
) -> None:
    project = docker_project
    prefix = project.templates
    result, how = project.run("2")
    result.assert_outcomes(passed=4)
    # A worker that waited on the builder sets its own schema up: adopting the image
    # would cost a second container start.
    assert sorted(how.values()) in (["built", "setup"], ["built", "reused"])
    assert len(schema_images(engine, prefix)) == 1
    setups = project.setups()

    result, how = project.run("2")
    result.assert_outcomes(passed=4)
    assert set(how.values()) == {"reused"}
    assert project.setups() == setups

    project.change_the_schema()
    result, how = project.run("0")
    result.assert_outcomes(passed=5)
    assert how == {"main": "built"}
    assert len(schema_images(engine, prefix)) == 1


@pytest.mark.parametrize("docker_project", [False], indirect=True, ids=["cluster-in-image"])
def test_docker_keeps_a_template_per_version_until_the_files_change(
    docker_project: Project, engine: Any
) -> None:
    project = docker_project
    for version in ("15", "16"):
        result, how = project.run("0", f"--servicematrix-pg={version}")
        result.assert_outcomes(passed=4)
        assert how == {"main": "built"}
    assert len(schema_images(engine, project.templates)) == 2
    result, how = project.run("0", "--servicematrix-pg=16")
    assert how == {"main": "reused"}

    project.change_the_schema()
    result, how = project.run("0")
    result.assert_outcomes(passed=5)
    assert how == {"main": "built"}
    assert len(schema_images(engine, project.templates)) == 1
