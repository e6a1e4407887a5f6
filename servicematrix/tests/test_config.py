from __future__ import annotations

import re
from pathlib import Path

import pytest

from servicematrix import envmap
from servicematrix.config import SETTINGS, Config, RedisVersion
from servicematrix.errors import ConfigError
from servicematrix.info import Role, ServerInfo


def resolve(cli: dict[str, str], ini: dict[str, str], env: dict[str, str]) -> Config:
    return Config.resolve(cli=cli.get, ini=ini.get, env=env)


def test_cli_beats_ini_beats_env_beats_default() -> None:
    assert resolve({}, {}, {}).backend == "auto"
    assert resolve({}, {}, {"SERVICEMATRIX_PG": "13"}).pg == 13
    assert resolve({}, {"servicematrix_pg": "15"}, {"SERVICEMATRIX_PG": "13"}).pg == 15
    assert resolve({"pg": "16"}, {"servicematrix_pg": "15"}, {"SERVICEMATRIX_PG": "13"}).pg == 16


def test_every_setting_has_one_stem_in_three_names() -> None:
    for s in SETTINGS:
        assert s.cli == "--servicematrix-" + s.stem.replace("_", "-")
        assert s.ini == "servicematrix_" + s.stem
        assert s.env == "SERVICEMATRIX_" + s.stem.upper()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("7", RedisVersion("redis", 7)),
        ("redis-6", RedisVersion("redis", 6)),
        ("valkey-8", RedisVersion("valkey", 8)),
        ("Valkey-8", RedisVersion("valkey", 8)),
    ],
)
def test_redis_versions(value: str, expected: RedisVersion) -> None:
    assert Config.parse({"redis": value}).redis == expected


def test_driver_selection() -> None:
    assert Config.parse({}).drivers is None  # each driver whose libraries are installed
    assert Config.parse({"driver": "both"}).drivers == ("sync", "async")
    assert Config.parse({"driver": "async"}).drivers == ("async",)


@pytest.mark.parametrize(
    ("stem", "value", "fix"),
    [
        ("backend", "podman", "one of auto, docker, local, external"),
        ("pg", "15.4", "a major version such as 15"),
        ("redis", "keydb-6", "valkey-8"),
        ("driver", "trio", "both, sync or async"),
        ("pg_url", "mysql://u:secret@h/db", "postgresql://"),
        ("redis_url", "localhost:6379", "redis://"),
    ],
)
def test_bad_values_name_setting_and_fix(stem: str, value: str, fix: str) -> None:
    with pytest.raises(ConfigError) as info:
        Config.parse({stem: value})
    message = str(info.value)
    assert "\n" not in message
    assert f"--servicematrix-{stem.replace('_', '-')}" in message
    assert fix in message
    assert "secret" not in message


def test_defaults_do_not_depend_on_the_machine() -> None:
    assert (Config.parse({}).pg_major, str(Config.parse({}).redis_version)) == (17, "redis-7")
    assert Config.parse({"pg": "15"}).pg_major == 15
    assert str(Config.parse({"redis": "valkey-8"}).redis_version) == "valkey-8"


def test_server_info_masks_password() -> None:
    info = ServerInfo("postgresql", "127.0.0.1", 5432, "u", "p@ss", "db", "15.4", "local")
    assert info.url("postgresql+asyncpg") == "postgresql+asyncpg://u:p%40ss@127.0.0.1:5432/db"
    assert "p@ss" not in info.describe()
    assert "p@ss" not in repr(info)
    assert info.major == 15


README = Path(__file__).resolve().parents[2] / "README.md"


def readme_settings() -> dict[str, str]:
    """The README's settings table: each stem and its row."""
    text = README.read_text()
    table = text[text.index("### Settings") :].split("\n\n")[2]
    rows: dict[str, str] = {}
    for row in table.splitlines()[2:]:
        first = row.split("|")[1]
        for stem in re.findall(r"`([a-z_]+)`", first):
            rows[stem] = row
    return rows


def test_the_readme_lists_every_setting_and_its_default() -> None:
    rows = readme_settings()
    assert set(rows) == {s.stem for s in SETTINGS}
    for setting in SETTINGS:
        if setting.default:
            assert f"`{setting.default.split(':')[0]}" in rows[setting.stem], setting.stem


SERVERS: dict[Role, ServerInfo] = {
    "pg": ServerInfo("postgresql", "10.0.0.1", 5433, "app", "s3cret", "shop", "16.4", "local"),
    "redis": ServerInfo("redis", "10.0.0.2", 6380, "", "s3cret", 0, "7.2.5", "local"),
}


def test_env_templates_name_pg_and_redis() -> None:
    entries = [("DATABASE_URL", "{pg:postgresql+psycopg}"), ("PGPORT", "{pg.port}")]
    entries.append(("REDIS_HOST", "{redis.host}"))
    assert [envmap.check_template(t) for _, t in entries] == [None, None, None]
    assert envmap.roles(entries) == {"pg", "redis"}
    assert envmap.render(entries, SERVERS) == {
        "DATABASE_URL": "postgresql+psycopg://app:s3cret@10.0.0.1:5433/shop",
        "PGPORT": "5433",
        "REDIS_HOST": "10.0.0.2",
    }


def test_env_templates_still_understand_postgres_and_say_it_is_pg_now() -> None:
    with pytest.deprecated_call(match='"postgres" is now called "pg"'):
        assert envmap.check_template("{postgres.port}") is None
    assert envmap.roles([("PGPORT", "{postgres.port}")]) == {"pg"}
    assert envmap.render([("PGPORT", "{postgres.port}")], SERVERS) == {"PGPORT": "5433"}
    assert envmap.check_template("{postgresql.port}") == (
        "unknown placeholder {postgresql.port}; fields are host, port, user, password, database"
    )
