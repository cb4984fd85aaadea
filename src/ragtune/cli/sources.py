from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from ragtune.cli.common import CollectionOpt, HomeOpt, JsonOpt, SetOpt, err, print_json, progress_bars

app = typer.Typer(help="Sources a collection keeps in sync: folders, web sites, git repositories, mailboxes.",
                  no_args_is_help=True)

OptionOpt = Annotated[Optional[list[str]], typer.Option(
    "--option", "-o", help="a connector option, KEY=VALUE (VALUE read as YAML: true, 3, [a, b]); repeatable")]


def parse_options(pairs: list[str] | None) -> dict[str, Any]:
    """KEY=VALUE pairs, values read as YAML (globs in brackets as a list).

    >>> parse_options(["start=http://x/", "delay_s=0", "include=[**/*.md, docs/*]", "robots=false"])
    {'start': 'http://x/', 'delay_s': 0, 'include': ['**/*.md', 'docs/*'], 'robots': False}
    """
    import yaml

    from ragtune.errors import InputError

    out: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise InputError(f"--option {pair!r}: write KEY=VALUE, e.g. --option path=./docs")
        try:
            out[key.strip()] = yaml.safe_load(value) if value.strip() else ""
        except yaml.YAMLError:  # globs: "[**/*.md, docs/*]" is not YAML ("*" starts an alias)
            inner = value.strip()
            out[key.strip()] = [v.strip() for v in inner[1:-1].split(",") if v.strip()] if \
                inner.startswith("[") and inner.endswith("]") else value
        if isinstance(out[key.strip()], (dict, type(None))):  # "a: b" or "~" were meant as text
            out[key.strip()] = value
    return out


@app.command()
def add(
    name: Annotated[str, typer.Argument(help="a name for the source, unique in the collection")],
    collection: CollectionOpt,
    type_: Annotated[str, typer.Option("--type", "-t", help="folder, web, git, mailbox (or a plugin's type)")],
    options: OptionOpt = None,
    public: Annotated[bool, typer.Option("--public", help="everyone may see its documents")] = False,
    acl_group: Annotated[Optional[list[str]], typer.Option("--acl-group", help="a group that may see them (repeatable)")] = None,
    acl_user: Annotated[Optional[list[str]], typer.Option("--acl-user", help="a user who may see them (repeatable)")] = None,
    every: Annotated[Optional[float], typer.Option("--every", help="sync every this many seconds under `ragtune serve` / `sources watch`")] = None,
    config: Annotated[Optional[Path], typer.Option("--config", help="pipeline YAML/TOML for a new collection")] = None,
    set_: SetOpt = None,
    home: HomeOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Add a source to a collection (created on first use). Options per type:
    folder: path, include, exclude, permissions (POSIX owner/group/mode as ACLs);
    web: start, sitemap, allow, max_pages, delay_s, timeout_s, robots;
    git: repo (path or URL), branch, include, exclude;
    mailbox: path (mbox/Maildir) or imap_host, imap_port, imap_ssl, username, password_env, folders, owner."""
    from ragtune.collection import Collection
    from ragtune.config import PipelineConfig
    from ragtune.ingest.sources import add_source
    from ragtune.types import Acl

    acl = Acl(public=public, users=tuple(acl_user or ()), groups=tuple(acl_group or ()))
    opts = parse_options(options)
    if Collection.exists(home, collection):
        if config or set_:
            from ragtune.errors import InputError

            raise InputError(f"{collection!r} exists: --config/--set only bind a new collection's pipeline; change it "
                             f"with `ragtune collections configure {collection} --set ...`")
        coll = Collection.open(home, collection)
    else:
        coll = Collection.create(home, collection, (PipelineConfig.load(config) if config else PipelineConfig()).with_overrides(set_))
    with coll:
        source = add_source(coll, name, type_, opts, acl, every)
    if json_:
        print_json(source.describe())
    else:
        err.print(f"[bold]{collection}[/]: source {name!r} ({type_}) added; read it with `ragtune sources sync {name} -c {collection}`")


@app.command()
def update(
    name: Annotated[str, typer.Argument(help="the source to change")],
    collection: CollectionOpt,
    options: OptionOpt = None,
    public: Annotated[Optional[bool], typer.Option("--public/--not-public", help="everyone may (not) see its documents")] = None,
    acl_group: Annotated[Optional[list[str]], typer.Option("--acl-group", help="replace the groups that may see them")] = None,
    acl_user: Annotated[Optional[list[str]], typer.Option("--acl-user", help="replace the users who may see them")] = None,
    every: Annotated[Optional[float], typer.Option("--every", help="sync every this many seconds (0: no schedule)")] = None,
    home: HomeOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Change a source's options (-o KEY=VALUE; KEY= removes one), ACL or schedule. The next sync
    reads everything again (only changed text is re-embedded) so the new settings reach every document."""
    from ragtune.collection import Collection
    from ragtune.ingest.sources import get_source, update_source
    from ragtune.types import Acl

    opts = {k: (None if v == "" else v) for k, v in parse_options(options).items()}
    with Collection.open(home, collection) as coll:
        old = get_source(coll, name).acl
        acl = None
        if public is not None or acl_group is not None or acl_user is not None:
            acl = Acl(public=old.public if public is None else public,
                      users=old.users if acl_user is None else tuple(acl_user),
                      groups=old.groups if acl_group is None else tuple(acl_group))
        kwargs = {} if every is None else {"every_s": every or None}
        source = update_source(coll, name, opts, acl, **kwargs)
    if json_:
        print_json(source.describe())
    else:
        err.print(f"[bold]{collection}[/]: source {name!r} updated; the next sync re-reads it")


@app.command("list")
def list_(collection: CollectionOpt, home: HomeOpt = None, json_: JsonOpt = False) -> None:
    """Each source with its last sync: items seen, changed, deleted, failed, and the lag since."""
    from ragtune.collection import Collection
    from ragtune.ingest.sources import list_sources

    with Collection.open(home, collection) as coll:
        rows = [s.describe() for s in list_sources(coll)]
    if json_:
        print_json(rows)
        return
    if not rows:
        typer.echo(f"{collection}: no sources; add one with `ragtune sources add NAME -c {collection} --type folder -o path=DIR`")
    for r in rows:
        last = "never synced" if r["lag_s"] is None else (
            f"synced {r['lag_s']:.0f}s ago: {r['seen']} seen, {r['changed']} changed, {r['deleted']} deleted, {r['failed']} failed")
        error = f"; last error: {r['last_error']}" if r.get("last_error") else ""
        every = f", every {r['every_s']:g}s" if r["every_s"] else ""
        typer.echo(f"{r['name']}\t{r['type']}{every}\t{last}{error}")


@app.command()
def sync(
    collection: CollectionOpt,
    name: Annotated[Optional[str], typer.Argument(help="the source to sync (default: every source)")] = None,
    home: HomeOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Read what changed at the source(s) and apply it: new and changed items are embedded,
    items gone from the source deleted. A failing source does not stop the others."""
    from ragtune.collection import Collection
    from ragtune.errors import RagtuneError
    from ragtune.ingest.sources import list_sources, sync_source

    out, failed = {}, False
    with Collection.open(home, collection) as coll:
        names = [name] if name else [s.name for s in list_sources(coll)]
        for n in names:
            with progress_bars(disable=json_) as on_progress:
                try:
                    report = sync_source(coll, n, on_progress)
                except RagtuneError as e:
                    if name:
                        raise
                    failed = True
                    out[n] = {"error": str(e)}
                    err.print(f"  [red]{n}[/]: {e}", highlight=False)
                    continue
            out[n] = {k: v for k, v in vars(report).items() if k != "failures"} | {
                "failures": [{"source": s, "reason": r} for s, r in report.failures]}
            if not json_:
                err.print(f"[bold]{n}[/]: {report.seen} seen, {report.indexed} new, {report.updated} changed, "
                          f"{report.relabelled} relabelled, {report.unchanged} unchanged, {report.deleted} deleted, "
                          f"{report.failed} failed in {report.seconds:.1f}s", highlight=False)
                for source, reason in report.failures[:20]:
                    err.print(f"  [red]failed[/] {source}: {reason}", highlight=False)
    if json_:
        print_json(out)
    if failed:
        raise typer.Exit(1)


@app.command()
def remove(name: Annotated[str, typer.Argument(help="the source to remove")], collection: CollectionOpt,
           home: HomeOpt = None, json_: JsonOpt = False) -> None:
    """Remove a source and every document it brought in."""
    from ragtune.collection import Collection
    from ragtune.ingest.sources import remove_source

    with Collection.open(home, collection) as coll:
        report = remove_source(coll, name)
    if json_:
        print_json({"removed": name, "documents_deleted": report.deleted})
    else:
        err.print(f"[bold]{collection}[/]: source {name!r} removed with its {report.deleted} documents")


@app.command()
def watch(
    collection: CollectionOpt,
    reconcile: Annotated[float, typer.Option("--reconcile", help="seconds between full reconciliations of a folder without --every")] = 300.0,
    debounce: Annotated[float, typer.Option("--debounce", help="seconds to wait after a file change before syncing")] = 0.5,
    home: HomeOpt = None,
) -> None:
    """Keep the collection's sources in sync until Ctrl-C: folders on file changes, every source on
    its schedule (--every)."""
    from ragtune.collection import Collection
    from ragtune.ingest.watch import SourceWatcher

    def on_sync(name: str, report, error: str | None) -> None:
        if error:
            err.print(f"[red]{name}[/]: {error}", highlight=False)
        elif report.indexed or report.updated or report.relabelled or report.deleted or report.failed:
            err.print(f"{name}: {report.indexed} new, {report.updated} changed, {report.relabelled} relabelled, "
                      f"{report.deleted} deleted, {report.failed} failed in {report.seconds:.1f}s", highlight=False)

    with Collection.open(home, collection) as coll:
        watcher = SourceWatcher(coll, debounce_s=debounce, reconcile_s=reconcile, on_sync=on_sync)
        err.print(f"watching {collection}'s sources (Ctrl-C to stop)")
        try:
            watcher.run()
        except KeyboardInterrupt:
            watcher.stop()
