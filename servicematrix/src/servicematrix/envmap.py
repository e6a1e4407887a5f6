"""The ``env`` setting: environment variables that name the worker's servers.

Frameworks that read their settings at start-up (Django, pydantic-settings, a
module-level client) need the addresses before any fixture runs, so the plugin sets
these variables before the project's conftests are imported. A template names a server
and, optionally, a URL scheme or one field::

    DATABASE_URL={pg:postgresql+psycopg}   REDIS_URL={redis}   PGPORT={pg.port}
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from servicematrix.info import Role, ServerInfo, role_named

FIELDS = ("host", "port", "user", "password", "database")
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
_SPEC = re.compile(r"^(pg|postgres|redis)(?:\.(" + "|".join(FIELDS) + r")|:([a-z][a-z0-9+.-]*))?$")
# Where no servers exist (the xdist controller runs no test): a port nothing listens on,
# so code that connects there fails at once instead of finding some other server.
_NOWHERE = {
    "pg": ServerInfo("postgresql", "127.0.0.1", 1, "postgres", "", "postgres", "0", "none"),
    "redis": ServerInfo("redis", "127.0.0.1", 1, "", "", 0, "0", "none"),
}


def check_template(template: str) -> str | None:
    """Why ``template`` cannot be rendered, or None when it can."""
    specs = _PLACEHOLDER.findall(template)
    if not specs:
        return "no {pg} or {redis} placeholder"
    bad = [s for s in specs if not _SPEC.match(s)]
    if bad:
        return f"unknown placeholder {{{bad[0]}}}; fields are {', '.join(FIELDS)}"
    for spec in specs:
        _role(spec, warn=True)
    return None


def _role(spec: str, *, warn: bool = False) -> Role:
    match = _SPEC.match(spec)
    role = role_named(match.group(1), warn=warn) if match else None
    assert role is not None, "checked when the setting was parsed"
    return role


def roles(entries: Iterable[tuple[str, str]]) -> set[Role]:
    """The servers the templates name."""
    found: set[Role] = set()
    for _, template in entries:
        for spec in _PLACEHOLDER.findall(template):
            found.add(_role(spec))
    return found


def render(
    entries: Iterable[tuple[str, str]], servers: Mapping[Role, ServerInfo] | None
) -> dict[str, str]:
    """The variables, with each placeholder replaced; None: the controller's stand-ins."""
    known = servers if servers is not None else _NOWHERE

    def value(match: re.Match[str]) -> str:
        spec = _SPEC.match(match.group(1))
        assert spec is not None, "checked when the setting was parsed"
        _, field, scheme = spec.groups()
        server = known[_role(match.group(1))]
        if field:
            return str(getattr(server, field))
        return server.url(scheme)

    return {name: _PLACEHOLDER.sub(value, template) for name, template in entries}
