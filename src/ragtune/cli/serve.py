"""``ragtune serve``, ``ragtune keys ...`` and ``ragtune feedback export``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ragtune.cli.common import HomeOpt, JsonOpt, SetOpt, print_json

keys_app = typer.Typer(help="API keys of the server: each maps to a user, groups (ACLs) and a role.", no_args_is_help=True)
feedback_app = typer.Typer(help="Feedback captured by the server.", no_args_is_help=True)


def serve(
    host: Annotated[str, typer.Option(help="interface to listen on (0.0.0.0 exposes it beyond this machine)")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8000,
    adapter_cache: Annotated[int, typer.Option(help="generators (base/adapters) kept loaded")] = 2,
    max_queue: Annotated[int, typer.Option(help="generations waiting per model before 503")] = 8,
    max_tokens: Annotated[int, typer.Option(help="most tokens one chat completion may generate (requests asking more get this)")] = 1024,
    auth_config: Annotated[Optional[Path], typer.Option(
        help="YAML/JSON with `oidc:` (issuer, audience, user_claim, groups_claim, admin_groups, ...) and/or "
             "`proxy:` (trusted, user_header, groups_header): SSO tokens or a trusted proxy beside API keys")] = None,
    oidc_issuer: Annotated[Optional[str], typer.Option(help="accept this identity provider's tokens (needs --oidc-audience)")] = None,
    oidc_audience: Annotated[Optional[str], typer.Option(help="the audience (client id) its tokens must carry")] = None,
    otlp_endpoint: Annotated[Optional[str], typer.Option(
        help="export each request's stage spans over OTLP/HTTP (e.g. http://collector:4318/v1/traces)")] = None,
    metrics: Annotated[bool, typer.Option(help="Prometheus metrics at /metrics (admin key)")] = True,
    malloc_arenas: Annotated[int, typer.Option(
        help="glibc heap arenas (0: glibc's default of 8 per core; $MALLOC_ARENA_MAX wins): fewer keep "
             "the memory of concurrent model calls from staying resident")] = 2,
    flywheel_every: Annotated[Optional[float], typer.Option(
        "--flywheel-every", help="opt-in: every N minutes run the flywheel on each collection whose run is due "
        "(one at a time, low priority, queries keep being served)", min=0.1)] = None,
    flywheel_option: Annotated[Optional[list[str]], typer.Option(
        "--flywheel-option", help="a FlywheelConfig field for that worker, KEY=VALUE (repeatable; e.g. synthetic=false)")] = None,
    set_: SetOpt = None,
    home: HomeOpt = None,
) -> None:
    """Run the HTTP API, the OpenAI-compatible endpoints and the web UI (every route needs a key or token)."""
    import uvicorn

    from ragtune.serve.app import create_app
    from ragtune.serve.keys import KeyStore
    from ragtune.serve.memory import cap_malloc_arenas

    cap_malloc_arenas(malloc_arenas)  # before uvicorn starts its threads
    from ragtune.serve.state import ServeConfig
    from ragtune.serve.telemetry import TelemetryConfig

    identity = identity_config(auth_config, oidc_issuer, oidc_audience)
    store = KeyStore(home)
    if not store.list() and not identity:
        typer.echo("no API keys yet: create one with `ragtune keys create --user admin --role admin`", err=True)
    store.close()
    config = ServeConfig(host=host, port=port, adapter_cache=adapter_cache, max_queue=max_queue, max_completion_tokens=max_tokens,
                         pipeline=set_ or [], telemetry=TelemetryConfig(metrics=metrics, otlp_endpoint=otlp_endpoint),
                         flywheel_every_minutes=flywheel_every, flywheel=flywheel_options(flywheel_option or []),
                         **identity)
    # One process: the embedded store has a single owner. Concurrency comes from the thread pool.
    # proxy_headers=False: the peer address must be the TCP peer's, not what X-Forwarded-For claims,
    # or anyone could pose as the trusted proxy whose user/groups headers are believed.
    uvicorn.run(create_app(home, config), host=host, port=port, log_level="warning", proxy_headers=False)


def mcp(
    key: Annotated[Optional[str], typer.Option(envvar="RAGTUNE_API_KEY", show_default=False,
                                               help="the API key whose principal the agent acts as (or $RAGTUNE_API_KEY)")] = None,
    home: HomeOpt = None,
) -> None:
    """Serve search/ask to a local agent over MCP stdio, as the key's principal. With `ragtune serve`
    running on this home, point the agent at its streamable-HTTP endpoint /mcp instead."""
    from ragtune.errors import InputError
    from ragtune.serve.mcp_server import build
    from ragtune.serve.state import ServerState

    if not key:
        raise InputError("ragtune mcp needs an API key: --key rt_... or $RAGTUNE_API_KEY (ragtune keys create)")
    server = ServerState(home)
    caller = server.keys.lookup(key)
    if caller is None:
        server.close()
        raise InputError("that API key is unknown or revoked; see `ragtune keys list`")
    try:
        build(server, caller).run("stdio")
    finally:
        server.close()


def flywheel_options(options: list[str]) -> dict:
    """``KEY=VALUE`` pairs as FlywheelConfig fields; a value is read as JSON when it parses (numbers,
    true/false, lists), else kept as text."""
    import json
    from dataclasses import fields

    from ragtune.cli.common import fail
    from ragtune.flywheel import FlywheelConfig

    known = {f.name for f in fields(FlywheelConfig)}
    out: dict = {}
    for option in options:
        key, sep, value = option.partition("=")
        if not sep or key.strip() not in known:
            fail(f"--flywheel-option {option!r}: write KEY=VALUE with KEY one of {', '.join(sorted(known))}")
        try:
            out[key.strip()] = json.loads(value)
        except ValueError:
            out[key.strip()] = value
    if isinstance(out.get("tasks"), list):
        out["tasks"] = tuple(out["tasks"])
    return out


def identity_config(path: Path | None, issuer: str | None, audience: str | None) -> dict:
    """``oidc`` / ``proxy`` of ServeConfig from ``--auth-config`` and the two shortcuts; errors name
    the file and the field."""
    import yaml
    from pydantic import ValidationError

    from ragtune.config import ConfigError
    from ragtune.serve.identity import OidcConfig, ProxyConfig

    data: dict = {}
    if path is not None:
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except OSError as e:
            raise ConfigError(f"{path}: cannot read the auth config ({e.strerror})") from e
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: not valid YAML/JSON: {e}") from e
        unknown = set(data) - {"oidc", "proxy"} if isinstance(data, dict) else {"(not a mapping)"}
        if unknown:
            raise ConfigError(f"{path}: unknown section(s) {sorted(unknown)}; use `oidc:` and/or `proxy:`")
    if issuer or audience:
        if not (issuer and audience):
            raise ConfigError("--oidc-issuer and --oidc-audience go together: tokens are checked against both")
        data["oidc"] = {**(data.get("oidc") or {}), "issuer": issuer, "audience": audience}
    out = {}
    for name, model in (("oidc", OidcConfig), ("proxy", ProxyConfig)):
        if data.get(name) is not None:
            try:
                out[name] = model.model_validate(data[name])
            except ValidationError as e:
                where = "; ".join(f"{name}.{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors())
                raise ConfigError(f"{path or 'auth options'}: {where}") from e
    return out


@keys_app.command("create")
def keys_create(
    user: Annotated[str, typer.Option(help="user name (ACL user:<name>)")],
    group: Annotated[Optional[list[str]], typer.Option("--group", "-g", help="ACL group (repeatable)")] = None,
    role: Annotated[str, typer.Option(help="admin or user")] = "user",
    home: HomeOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Create a key; the secret is printed once and never stored."""
    from ragtune.serve.keys import KeyStore

    store = KeyStore(home)
    secret, info = store.create(user, group or [], role)
    store.close()
    if json_:
        print_json({"key": secret, **info.to_dict()})
    else:
        typer.echo(secret)
        typer.echo(f"id {info.id}: user {info.user}, groups {list(info.groups)}, role {info.role} "
                   "(the key is shown only now)", err=True)


@keys_app.command("list")
def keys_list(home: HomeOpt = None, json_: JsonOpt = False,
              revoked: Annotated[bool, typer.Option("--revoked", help="include revoked keys")] = False) -> None:
    """List keys (ids, users, groups, roles; never the secrets)."""
    from ragtune.serve.keys import KeyStore

    store = KeyStore(home)
    rows = [k.to_dict() for k in store.list(include_revoked=revoked)]
    store.close()
    if json_:
        print_json(rows)
        return
    for k in rows:
        typer.echo(f"{k['id']}\t{k['user']}\t{','.join(k['groups']) or '-'}\t{k['role']}"
                   + ("\trevoked" if k["revoked"] else ""))


@keys_app.command("revoke")
def keys_revoke(key_id: Annotated[str, typer.Argument(help="the key's id (from `ragtune keys list`)")],
                home: HomeOpt = None) -> None:
    """Revoke a key: requests with it get 401 from then on."""
    from ragtune.serve.keys import KeyStore

    store = KeyStore(home)
    info = store.revoke(key_id)
    store.close()
    typer.echo(f"revoked {info.id} ({info.user})")


@feedback_app.command("export")
def feedback_export(out: Annotated[Path, typer.Option("--out", "-o", help="folder to write into")],
                    test_fraction: Annotated[float, typer.Option(
                        help="newest share of the labelled queries held out as their test split")] = 0.2,
                    collection: Annotated[Optional[str], typer.Option(
                        "--collection", "-c", help="only this collection's answers")] = None,
                    home: HomeOpt = None, json_: JsonOpt = False) -> None:
    """Write squad.json (train generator/reader), preferences.jsonl (chosen/rejected), kto.jsonl (rated
    answers), retrieval/<collection>/ (thumbs-up questions with their cited chunks, BEIR, split by time) and feedback.jsonl."""
    from ragtune.feedback import FeedbackStore

    store = FeedbackStore(home)
    counts = store.export(out, test_fraction, collection)
    store.close()
    if json_:
        print_json(counts)
    else:
        labelled = ", ".join(f"{c}: {n['train']} train + {n['test']} test" for c, n in counts["labelled_queries"].items())
        typer.echo(f"{counts['feedback']} feedback rows → {counts['squad']} SQuAD examples, "
                   f"{counts['preferences']} preference pairs, {counts['kto']} KTO rows, "
                   f"labelled retrieval queries ({labelled or 'none'}) in {out}")
