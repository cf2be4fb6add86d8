"""How the server answers what it will not run: ``{"error": "..."}`` JSON with a 4xx (or 5xx) code, always.

* a POST to ``/v1/predict`` or ``/v1/embed`` without a JSON content type: 415, before routing or parsing;
* an unknown path (404), a wrong method (405), a body FastAPI cannot decode (400): the same JSON shape
  as the server's own errors, not FastAPI's ``{"detail": ...}``;
* a text holding a lone UTF-16 surrogate (``"\\ud800"`` in the JSON): 422 before tokenizing (it cannot be
  written back as UTF-8, so the answer itself would fail after the model ran);
* anything unexpected: a logged 500 JSON answer on a connection that stays open (uvicorn closes the
  connection when an exception reaches it, which a keep-alive client sees as a reset).

Imports no torch.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

JSON_ENDPOINTS = ("/v1/predict", "/v1/embed")
LONE_SURROGATE = re.compile("[\ud800-\udfff]")  # json decodes a valid pair to one character: any left is lone
logger = logging.getLogger("ernie_tiny.serve")


def lone_surrogate_error(field: str, text: str) -> str | None:
    """Why ``text`` is no Unicode text (a lone surrogate, with its position), or None."""
    found = LONE_SURROGATE.search(text)
    if found is None:
        return None
    return (f"{field} holds a lone surrogate U+{ord(found.group()):04X} at character {found.start()}: "
            "not Unicode text (a UTF-16 surrogate must come in a pair)")


def is_json_content_type(value: str) -> bool:
    """``application/json`` or ``application/...+json``, any parameters (charset) allowed."""
    media_type = value.split(";", 1)[0].strip().lower()
    return media_type == "application/json" or (media_type.startswith("application/") and media_type.endswith("+json"))


async def send_json(send: Callable, status: int, body: dict, headers: tuple[tuple[bytes, bytes], ...] = ()) -> None:
    payload = json.dumps(body, ensure_ascii=False).encode("utf-8")
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()),
                            *headers]})
    await send({"type": "http.response.body", "body": payload})


class RequestGuard:
    """Plain ASGI: refuses a non-JSON body with 415 and turns an unexpected exception into a JSON 500."""

    def __init__(self, app: Callable):
        self.app = app

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        if scope["method"] == "POST" and scope["path"] in JSON_ENDPOINTS:
            content_type = dict(scope.get("headers", ())).get(b"content-type", b"").decode("latin-1")
            if not is_json_content_type(content_type):
                shown = f"Content-Type {content_type!r}" if content_type else "no Content-Type"
                return await send_json(send, 415, {"error": f"{shown}: send the JSON body with "
                                                            "Content-Type: application/json"})
        started = False

        async def send_and_note_start(message: dict) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, send_and_note_start)
        except Exception as err:  # the last resort: an answer instead of a dropped connection
            logger.exception("error while answering %s %s", scope["method"], scope["path"])
            if started:
                raise
            await send_json(send, 500, {"error": f"internal error ({type(err).__name__}); the server log has "
                                                 "the details"})


def http_error_message(request: Request, error: StarletteHTTPException) -> str:
    """One line for FastAPI's own HTTP errors (unknown path, wrong method, undecodable body)."""
    if error.status_code == 404:
        return f"no endpoint {request.url.path}; the endpoints are POST {', POST '.join(JSON_ENDPOINTS)}, " \
               "GET /v1/model, GET /healthz, GET /metrics"
    if error.status_code == 405:
        allowed = {name.lower(): value for name, value in (error.headers or {}).items()}.get("allow", "")
        return f"{request.method} {request.url.path}: method not allowed" + (f" (use {allowed})" if allowed else "")
    if error.status_code == 400 and "parsing the body" in str(error.detail):
        # FastAPI's answer to a body json.loads fails on with something other than a syntax error
        return "the body could not be decoded as JSON: send UTF-8 text, nested less than 1000 levels deep"
    return str(error.detail)


def install_error_answers(app: FastAPI) -> None:
    """Adds :class:`RequestGuard` and the JSON answers for FastAPI's HTTP errors to ``app``.

    Call before adding the metrics middleware, so that it counts the answers given here.
    """
    app.add_middleware(RequestGuard)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": http_error_message(request, error)}, status_code=error.status_code,
                            headers=error.headers)
