"""422s that can always be sent, whatever the request held.

FastAPI's own 422 echoes each invalid input back as UTF-8 JSON, so an input
with no such rendering fails a second time, as a 500: a lone surrogate (``"\\ud800"``
in the request's JSON) has no UTF-8 encoding, and NaN, Infinity or 1e400 (which
Python's JSON parser reads as floats) have no JSON number.
"""

import json
import math
from typing import Any

from fastapi import FastAPI, Request, status
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse


class AsciiJSONResponse(JSONResponse):
    """JSON with every non-ASCII character escaped, so a lone surrogate goes out as ``\\ud800``."""

    def render(self, content: Any) -> bytes:
        """The content as ASCII JSON."""
        return json.dumps(content, allow_nan=False, separators=(",", ":")).encode("ascii")


def renderable(value: Any) -> Any:
    """``value`` with the floats JSON has no number for written as strings ("nan", "inf")."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, list):
        return [renderable(item) for item in value]
    if isinstance(value, dict):
        return {key: renderable(item) for key, item in value.items()}
    return value


async def invalid_request(request: Request, exc: Exception) -> JSONResponse:
    """FastAPI's 422 body, rendered so that no input can turn it into a 500."""
    errors = exc.errors() if isinstance(exc, RequestValidationError) else []
    return AsciiJSONResponse(
        {"detail": renderable(jsonable_encoder(errors))},
        status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
    )


def install(app: FastAPI) -> None:
    """Answer every invalid request on ``app`` with a 422 that renders."""
    app.add_exception_handler(RequestValidationError, invalid_request)
