"""The HTTP face of ragtune: ``create_app(home)`` builds the FastAPI app that ``ragtune serve`` runs.

Every route needs an API key (``Authorization: Bearer rt_...`` or ``X-API-Key``) except
``/healthz`` and the pages that carry no data: the web UI shell and the API docs/schema. The
key's principal is the ACL filter of every search, ask and chat. Errors have one JSON shape, the
OpenAI one, so OpenAI clients report them properly::

    {"error": {"message": "...", "type": "not_found", "code": 404}}

Example:
    >>> from fastapi.testclient import TestClient  # doctest: +SKIP
    >>> client = TestClient(create_app("/tmp/home"))  # doctest: +SKIP
    >>> client.get("/v1/collections").status_code  # doctest: +SKIP
    401
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from starlette.exceptions import HTTPException

from ragtune.serve.keys import KeyInfo
from ragtune.serve.state import ServeConfig, ServerState

STATIC = Path(__file__).parent / "static"
# Routes that answer without a key: they hold no data (health, the UI shell, the API's own description).
PUBLIC_PATHS = frozenset({"/healthz", "/", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"})


class ApiError(Exception):
    def __init__(self, status: int, kind: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.kind, self.message, self.headers = status, kind, message, headers or {}


def not_found(what: str) -> ApiError:
    return ApiError(404, "not_found", f"{what} not found")


def error_body(status: int, kind: str, message: str) -> dict:
    return {"error": {"message": message, "type": kind, "code": status}}


def state(request: Request) -> ServerState:
    return request.app.state.ragtune


def caller(request: Request) -> KeyInfo:
    """The key's owner; 401 without a valid key (the same answer for missing, unknown and revoked)."""
    auth = request.headers.get("authorization", "")
    secret = auth[7:].strip() if auth.lower().startswith("bearer ") else request.headers.get("x-api-key", "")
    info = state(request).keys.lookup(secret) if secret else None
    if info is None:
        raise ApiError(401, "unauthorized", "a valid API key is required (Authorization: Bearer <key>)",
                       {"WWW-Authenticate": "Bearer"})
    return info


def admin(info: Annotated[KeyInfo, Depends(caller)]) -> KeyInfo:
    if not info.is_admin:
        raise ApiError(403, "forbidden", "this needs an admin key")
    return info


Caller = Annotated[KeyInfo, Depends(caller)]
Admin = Annotated[KeyInfo, Depends(admin)]
State = Annotated[ServerState, Depends(state)]


def create_app(home: str | Path | None = None, config: ServeConfig | None = None) -> FastAPI:
    from ragtune.serve.routes import admin as admin_routes
    from ragtune.serve.routes import collections, openai

    server = ServerState(home, config)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        server.close()

    app = FastAPI(title="ragtune", version="0.1.0", lifespan=lifespan,
                  description="Collections, search, grounded answers with citations, OpenAI-compatible endpoints.")
    app.state.ragtune = server
    _errors(app)

    @app.get("/healthz", tags=["meta"])
    def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/", include_in_schema=False)
    def ui() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    app.include_router(collections.router)
    app.include_router(openai.router)
    app.include_router(admin_routes.router)
    return app


def _errors(app: FastAPI) -> None:
    from ragtune.collection import CollectionNotFoundError
    from ragtune.config import ConfigError
    from ragtune.index.base import StoreBusyError
    from ragtune.models.generator import GeneratorError
    from ragtune.serve.engines import Busy

    def reply(status: int, kind: str, message: str, headers: dict | None = None) -> JSONResponse:
        return JSONResponse(error_body(status, kind, message), status_code=status, headers=headers)

    @app.exception_handler(ApiError)
    async def api_error(_, e: ApiError):
        return reply(e.status, e.kind, e.message, e.headers)

    @app.exception_handler(HTTPException)
    async def http_error(_, e: HTTPException):
        kind = {404: "not_found", 405: "method_not_allowed"}.get(e.status_code, "http_error")
        return reply(e.status_code, kind, str(e.detail), getattr(e, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def invalid(_, e: RequestValidationError):
        where = "; ".join(f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in e.errors())
        return reply(422, "invalid_request", where)

    @app.exception_handler(CollectionNotFoundError)
    async def no_collection(_, e):  # the message would list the other collections: say less
        return reply(404, "not_found", "collection not found")

    @app.exception_handler(Busy)
    async def busy(_, e: Busy):
        return reply(503, "overloaded", str(e), {"Retry-After": str(e.retry_after)})

    # Library errors whose message is safe to show: one status and kind each.
    for exc, status, kind in ((StoreBusyError, 409, "conflict"), (GeneratorError, 502, "generator_error"),
                              (ConfigError, 400, "invalid_request"), (ValueError, 400, "invalid_request")):
        app.add_exception_handler(exc, lambda _, e, status=status, kind=kind: reply(status, kind, str(e)))
