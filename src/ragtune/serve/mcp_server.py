"""ragtune's search for agents: an MCP server (the official ``mcp`` SDK) with the tools
``list_collections``, ``search``, ``ask`` and ``get_document``.

Each tool is the HTTP route of the same name called with the caller's principal, so an agent sees
exactly what the caller's key or token may read — the ACL lives in the store query, as for every
other client. Two transports:

- **streamable HTTP** at ``/mcp`` of ``ragtune serve``: the server's guard identifies the caller
  (API key, OIDC token or trusted proxy) before the MCP layer reads the body;
- **stdio** (``ragtune mcp --key rt_...``): a local agent process; the key names the principal and
  the process owns the home's collections (do not run it beside ``ragtune serve`` on the same
  home: point the agent at the server's ``/mcp`` instead).
"""

from __future__ import annotations

from typing import Literal

from mcp.server import MCPServer
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError

from ragtune.serve.guard import KEY_SCOPE
from ragtune.serve.keys import KeyInfo
from ragtune.serve.state import ServerState

INSTRUCTIONS = ("Search and ask this organisation's documents. Results hold only what the caller may "
                "read; cite the passages an answer gives. Call list_collections first.")


def build(server: ServerState, caller: KeyInfo | None = None) -> MCPServer:
    """The MCP server over ``server``; ``caller`` fixes the principal (stdio), else each HTTP
    request's identified caller is used."""
    from ragtune.collection import CollectionNotFoundError
    from ragtune.errors import RagtuneError
    from ragtune.serve.auth import ApiError
    from ragtune.serve.routes import collections as routes

    mcp = MCPServer(name="ragtune", instructions=INSTRUCTIONS)

    def who(ctx: Context) -> KeyInfo:
        if caller is not None:
            return caller
        request = ctx.request_context.request
        info = request.scope.get(KEY_SCOPE) if request is not None else None
        if info is None:  # the guard answers 401 first; this is a second lock on the door
            raise ToolError("not authenticated")
        return info

    def call(fn, *args):
        try:
            return fn(*args)
        except ApiError as e:
            raise ToolError(e.message) from None
        except CollectionNotFoundError:  # its message lists the other collections: say less
            raise ToolError("collection not found") from None
        except RagtuneError as e:
            raise ToolError(str(e)) from None

    @mcp.tool()
    def list_collections(ctx: Context) -> dict:
        """The collections, with counts of the documents this caller may read."""
        return call(routes.list_collections, server, who(ctx))

    @mcp.tool()
    def search(collection: str, query: str, ctx: Context, k: int = 5,
               mode: Literal["dense", "bm25", "hybrid"] | None = None) -> dict:
        """The passages of ``collection`` that best match ``query`` (hybrid by default), best first."""
        return call(routes.search, collection, routes.SearchIn(query=query, k=k, mode=mode), server, who(ctx))

    @mcp.tool()
    def ask(collection: str, question: str, ctx: Context, k: int | None = None) -> dict:
        """A grounded answer with numbered citations of the passages it used, or an abstention when
        the documents this caller may read do not answer it."""
        return call(routes.ask, collection, routes.AskIn(question=question, k=k), server, who(ctx))

    @mcp.tool()
    def get_document(collection: str, doc_id: str, ctx: Context) -> dict:
        """One document's metadata: title, source file, state, chunk count (search hits name it by ``doc_id``)."""
        return call(routes.get_document, collection, doc_id, server, who(ctx))

    return mcp


def http_app(server: ServerState):
    """The streamable-HTTP MCP app (a Starlette app: mount its ``/mcp`` route, run its lifespan).
    Stateless JSON responses: every call stands alone, so any API replica can answer it. Host
    checks (DNS-rebinding protection) are off because every call carries a key or token that a
    rebinding page cannot attach."""
    from mcp.server.transport_security import TransportSecuritySettings

    return build(server).streamable_http_app(
        streamable_http_path="/mcp", stateless_http=True, json_response=True,
        transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False))
