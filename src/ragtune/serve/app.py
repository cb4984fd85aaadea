"""The HTTP face of ragtune: ``create_app(home)`` builds the FastAPI app that ``ragtune serve`` runs.

Every route needs a caller: an API key (``Authorization: Bearer rt_...`` or ``X-API-Key``), an
identity provider's token (``Authorization: Bearer <JWT>``, with ``oidc`` configured) or a trusted
proxy's headers (:mod:`ragtune.serve.identity`), except
``/healthz`` and the pages that carry no data: the web UI shell and the API docs/schema. The
caller's principal is the ACL filter of every search, ask and chat. Errors have one JSON shape, the
OpenAI one, so OpenAI clients report them properly::

    {"error": {"message": "...", "type": "not_found", "code": 404}}

Example:
    >>> from fastapi.testclient import TestClient  # doctest: +SKIP
    >>> client = TestClient(create_app("/tmp/home"))  # doctest: +SKIP
    >>> client.get("/v1/collections").status_code  # doctest: +SKIP
    401
"""

from __future__ import annotations

import logging
import uuid
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from starlette.exceptions import HTTPException

from ragtune.serve.auth import Admin, ApiError, error_body, not_found
from ragtune.serve.guard import Guard
from ragtune.serve.state import ServeConfig, ServerState
from ragtune.serve.telemetry import Metered

STATIC = Path(__file__).parent / "static"
log = logging.getLogger("ragtune.serve")
# Routes that answer without a key: they hold no data (health, the UI shell and how it signs in, the
# API's own description).
# No /docs or /redoc: FastAPI's pages load their scripts from a CDN, on the origin whose
# localStorage holds the UI's API key; /openapi.json works in any viewer the user trusts.
PUBLIC_PATHS = frozenset({"/healthz", "/", "/openapi.json", "/auth/config"})


def create_app(home: str | Path | None = None, config: ServeConfig | None = None) -> FastAPI:
    from ragtune.serve.mcp_server import http_app
    from ragtune.serve.routes import admin as admin_routes
    from ragtune.serve.routes import collections, openai

    server = ServerState(home, config)
    server.telemetry.install_tracing()
    agents = http_app(server)  # MCP over streamable HTTP at /mcp, behind the same guard

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        async with agents.router.lifespan_context(agents):
            yield
        server.close()

    app = FastAPI(title="ragtune", version="0.1.0", lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Collections, search, grounded answers with citations, OpenAI-compatible endpoints.")
    app.state.ragtune = server
    _errors(app)

    @app.get("/healthz", tags=["meta"])
    def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/", include_in_schema=False)
    def ui() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @app.get("/auth/config", tags=["meta"])
    def auth_config() -> dict:
        """How the web UI signs in: with an identity provider configured, its endpoints and the
        client id for the authorization-code + PKCE flow; else null (API keys only)."""
        oidc = server.auth.oidc
        if oidc is None:
            return {"oidc": None}
        try:
            return {"oidc": oidc.ui_config()}
        except (OSError, ValueError) as e:  # the provider is down or says too little: keys still work
            log.warning("identity provider discovery failed: %s", e)
            raise ApiError(502, "upstream_error", "the identity provider could not be reached; sign in with an API key")

    @app.get("/metrics", tags=["meta"], response_class=Response)
    def metrics(_: Admin) -> Response:
        """Prometheus metrics (an admin key: the figures describe every user's traffic)."""
        if not server.config.telemetry.metrics:
            raise not_found("/metrics (telemetry.metrics is off)")
        body, content_type = server.telemetry.exposition()
        return Response(body, media_type=content_type)

    app.router.routes.extend(agents.routes)  # its one route, /mcp
    app.include_router(collections.router)
    app.include_router(openai.router)
    app.include_router(admin_routes.router)
    cfg = server.config

    def limit_mb(method: str, path: str) -> float:
        uploads = method == "POST" and path.startswith("/v1/collections/") and path.endswith("/documents")
        return cfg.max_upload_mb if uploads else cfg.max_request_mb

    app.add_middleware(Guard, auth=lambda: server.auth, public=PUBLIC_PATHS, limit_mb=limit_mb)
    app.add_middleware(Metered, telemetry=lambda: server.telemetry)  # added last = outermost: 401s counted too
    return app


def _errors(app: FastAPI) -> None:
    from ragtune.collection import CollectionNotFoundError
    from ragtune.errors import RagtuneError
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

    @app.exception_handler(RagtuneError)
    async def user_error(_, e: RagtuneError):  # the library's user errors: their message is for the caller
        return reply(e.status, e.kind, str(e))

    @app.exception_handler(Exception)
    async def bug(request: Request, e: Exception):
        # Anything else is a bug: the caller gets an id to quote, the log gets the traceback.
        error_id = uuid.uuid4().hex[:12]
        log.error("internal error %s on %s %s", error_id, request.method, request.url.path, exc_info=e)
        return reply(500, "internal_error", f"internal error {error_id} (the server log has the details)")
