"""Schemathesis against the app's own OpenAPI schema, under both drivers.

The app runs as in production: ``create_app(settings)`` under a real uvicorn
server (``support.serve``), with the engine and Redis client its lifespan opens
in uvicorn's own thread and event loop, so no asyncpg connection is ever used
from a loop other than its own. Schemathesis sends its requests with its sync
transport from a worker thread (``asyncio.to_thread``), leaving the test's
loop free.

Isolation: committed mode, not the rolled-back ``db_session`` of the ``app``
fixture. Every request gets its own session and commits for real, as in
production; one shared session would carry a failed statement's aborted
transaction into the next request. So the test is ``committed``: its
``db_session`` truncates every table afterwards (ids restart at 1), and
``redis_client`` flushes the Redis database the app used.

Each operation gets ``CASES[mode]`` generated requests per mode: positive cases
follow the schema (half of them aimed at rows seeded first, so they get past
the 404s), negative ones break it and must be refused. No response may be a
5xx, a body must match its documented schema, and every 4xx carries a JSON
``detail``. Undocumented status codes (404, 400) are expected, so
``status_code_conformance`` is not run.
"""

import asyncio
import collections
import json
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import APIOperation, Case, GenerationMode
from schemathesis.checks import CheckContext, not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.core.result import Err
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from shop.config import Settings
from shop.main import create_app

from . import support
from .support import Json, create_item, create_user, drawn, serve

# Generated requests per operation and mode. Of the 14 operations, 12 take input:
# 12 x (14 + 6), plus one request to each of the other two, is 242 per driver.
CASES = {GenerationMode.POSITIVE: 14, GenerationMode.NEGATIVE: 6}
# A plain run sends the same cases every time; a matrix cell sends its own seeded share
# (support.drawn), so a cell fails for its server or its own draw, never a new random one.
FUZZ = settings(
    deadline=None,
    database=None,  # nothing written into the checkout; a failure prints its example
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
Tally = collections.Counter[int]
Operation = APIOperation[Any, Any, Any, Any]
AnyCase = Case[Any]
Known = dict[str, list[Any]]


def error_has_detail(ctx: CheckContext, response: schemathesis.Response, case: AnyCase) -> None:
    """Every 4xx says in a JSON ``detail`` what went wrong."""
    if 400 <= response.status_code < 500:
        body = json.loads(response.content)
        assert isinstance(body, dict), f"a {response.status_code} body is no JSON object: {body!r}"
        assert body.get("detail"), f"a {response.status_code} body has no detail: {body!r}"


CHECKS: list[Callable[..., Any]] = [
    not_a_server_error,
    response_schema_conformance,
    content_type_conformance,
    negative_data_rejection,
    error_has_detail,
]


def cases(operation: Operation, mode: GenerationMode, known: Known) -> st.SearchStrategy[AnyCase]:
    """Generated requests; positive ones half the time with a path parameter naming a seeded row."""
    generated = operation.as_strategy(generation_mode=mode)
    names = [parameter.name for parameter in operation.path_parameters]
    if mode is GenerationMode.NEGATIVE or not names:
        return generated
    aimed = [
        operation.as_strategy(generation_mode=mode, path_parameters={name: value})
        for name in names
        for value in known[name]
    ]
    return st.one_of(generated, st.one_of(aimed))


def fuzz_operation(
    operation: Operation, mode: GenerationMode, base_url: str, known: Known, tally: Tally
) -> None:
    """Send ``CASES[mode]`` generated requests to one operation and check every response."""
    with requests.Session() as http:

        @drawn(FUZZ, CASES[mode])
        @given(case=cases(operation, mode, known))
        def exercise(case: AnyCase) -> None:
            response = case.call(base_url=base_url, session=http)
            tally[response.status_code] += 1
            case.validate_response(response, checks=CHECKS)

        exercise()


def fuzz(base_url: str, known: Known, tally: Tally) -> list[str]:
    """Fuzz every operation; return one message per operation and mode that failed."""
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json", config=schemathesis.Config())
    failures = []
    for result in schema.get_all_operations():
        if isinstance(result, Err):
            raise result.err()
        operation = result.ok()
        takes_input = bool(operation.body) or any(operation.iter_parameters())
        for mode in CASES if takes_input else [GenerationMode.POSITIVE]:
            try:
                fuzz_operation(operation, mode, base_url, known, tally)
            except (Exception, FailureGroup) as exc:  # a group of check failures is no Exception
                failures.append(f"{operation.label} ({mode.value}): {exc}")
    return failures


async def seed(base_url: str) -> Known:
    """Two users with an order and a cart each, and two items: rows for aimed requests."""
    async with httpx.AsyncClient(base_url=base_url) as client:
        users = [await create_user(client) for _ in range(2)]
        items = [await create_item(client) for _ in range(2)]
        orders: list[Json] = []
        for user in users:
            order = {"user_id": user["id"], "total": 12.5}
            orders.append((await client.post("/api/orders", json=order)).json())
            cart = {"lines": [{"item_id": item["id"], "quantity": 2} for item in items]}
            assert (await client.put(f"/api/users/{user['id']}/cart", json=cart)).is_success
    return {
        "user_id": [user["id"] for user in users],
        "email": [user["email"] for user in users],
        "item_id": [item["id"] for item in items],
        "reference": [order["reference"] for order in orders],
    }


def tcp_socket() -> socket.socket:
    """A loopback socket asyncio recognises as TCP, so its connections get TCP_NODELAY."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    return sock


@pytest.fixture
async def base_url(
    settings: Settings,
    db_session: Session | AsyncSession,
    redis_client: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[str]:
    """The real app, with its own engine and Redis client, served on a loopback port."""
    # With protocol 0, asyncio leaves Nagle on: each response then waits 40 ms for an ACK.
    monkeypatch.setattr(support, "loopback_socket", tcp_socket)
    async with serve(create_app(settings)) as url:
        yield url


def record_tally(record_property: Callable[[str, object], None], tally: Tally) -> None:
    """Cases run and the status codes they got, for the JUnit XML."""
    record_property("cases", sum(tally.values()))
    for family in (2, 3, 4, 5):
        count = sum(n for code, n in tally.items() if code // 100 == family)
        record_property(f"status_{family}xx", count)
    record_property("status_codes", json.dumps(dict(sorted(tally.items()))))


@pytest.mark.committed
async def test_generated_requests_get_no_server_error(
    base_url: str, record_property: Callable[[str, object], None]
) -> None:
    known = await seed(base_url)
    tally: Tally = collections.Counter()
    try:
        failures = await asyncio.to_thread(fuzz, base_url, known, tally)
    finally:
        record_tally(record_property, tally)

    assert not failures, "\n\n".join(failures)
    assert tally.keys() & {200, 201}, f"no request got past validation to a real row: {tally}"
