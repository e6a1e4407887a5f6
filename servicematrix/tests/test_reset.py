"""The committed reset on a schema of many tables: the database made again from an
emptied copy, or TRUNCATE where the application holds a connection on it."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

PROJECT = Path(__file__).parent / "projects" / "many_tables"


@pytest.mark.parametrize("hold", ["", "1"], ids=["free", "held by the application"])
def test_committed_tests_on_many_tables(
    inner: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, hold: str
) -> None:
    shutil.copytree(PROJECT, inner.path, dirs_exist_ok=True)
    monkeypatch.setenv("HOLD", hold)
    # A subprocess: an in-process run would import asyncpg anew after an earlier one.
    result = inner.runpytest_subprocess("-p", "no:randomly", "--servicematrix-backend=local")
    result.assert_outcomes(passed=7)


def test_committed_tests_on_many_tables_in_docker(inner: pytest.Pytester, engine: Any) -> None:
    shutil.copytree(PROJECT, inner.path, dirs_exist_ok=True)
    result = inner.runpytest_subprocess("-p", "no:randomly", "--servicematrix-backend=docker")
    result.assert_outcomes(passed=7)
