"""``python -m servicematrix check``: the noxfile asks it whether a pair can be served."""

from __future__ import annotations

import pytest

from servicematrix import binaries
from servicematrix.__main__ import UNSERVABLE, main

from .support import REDIS


def test_check_names_the_backend_that_can_serve(capsys: pytest.CaptureFixture[str]) -> None:
    found = binaries.postgres_installations()
    assert found
    pg, redis = f"--servicematrix-pg={found[0].major}", f"--servicematrix-redis={REDIS}"
    assert main(["check", "--servicematrix-backend=local", pg, redis]) == 0
    assert capsys.readouterr().out == "local\n"


def test_check_gives_the_reason_when_nothing_can(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["check", "--servicematrix-backend=local", "--servicematrix-pg=9"])
    assert code == UNSERVABLE
    out = capsys.readouterr().out
    assert out.startswith("local backend: no PostgreSQL 9 binaries (")
    assert out.count("\n") == 1


def test_check_reads_the_environment(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SERVICEMATRIX_BACKEND", "external")
    monkeypatch.delenv("SERVICEMATRIX_PG_URL", raising=False)
    assert main(["check"]) == UNSERVABLE
    assert "needs a URL: set --servicematrix-pg-url" in capsys.readouterr().out
