"""pytest-xdist: every worker its own servers, and nothing left behind."""

from __future__ import annotations

import shutil

import pytest

from .leftovers import RECORD_SERVERS, leftovers, read_records


def test_each_worker_gets_its_own_servers_and_nothing_remains(
    inner: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = inner.mkdir("records")
    monkeypatch.setenv("RECORD_DIR", str(out))
    shutil.copy(RECORD_SERVERS, inner.path / "conftest.py")
    inner.makepyfile(
        """
        import pytest

        @pytest.mark.parametrize("n", range(4))
        def test_record(recorded, n):
            pass
        """
    )
    result = inner.runpytest("-n", "2", "--servicematrix-backend=local")
    result.assert_outcomes(passed=4)
    records = read_records(out)
    assert sorted(str(r["worker"]) for r in records) == ["gw0", "gw1"]
    ports = {r[k] for r in records for k in ("pg_port", "redis_port")}
    assert len(ports) == 4
    assert leftovers(records) == []
    result.stdout.fnmatch_lines(["gw0: PostgreSQL*", "gw1: PostgreSQL*"])
