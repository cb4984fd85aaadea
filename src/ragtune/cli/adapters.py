from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ragtune.cli.common import HomeOpt, JsonOpt, print_json

app = typer.Typer(help="Fine-tuned adapters of the local LLM: list, show, scope, delete, merge.", no_args_is_help=True)


@app.command("list")
def list_(home: HomeOpt = None, json_: JsonOpt = False) -> None:
    """Every registered adapter with its method, base, size and headline metric."""
    from ragtune.models.adapters import AdapterRegistry, refusal

    adapters = AdapterRegistry(home).list()
    if json_:
        print_json(adapters)
        return
    if not adapters:
        typer.echo("no adapters yet: train one with `ragtune train generator` or `ragtune train qgen`")
    for a in adapters:
        loss = a.get("eval_loss_after", a.get("train_loss"))
        refused = refusal(a)
        typer.echo(f"{a['name']:24s} {a.get('method', '?'):13s} {a.get('size_bytes', 0) / 1e6:9.2f} MB  "
                   f"{a.get('trainable_parameters', 0):>11,} params  base {a.get('base', '?')}"
                   + (f"  loss {loss:.4f}" if isinstance(loss, (int, float)) else "")
                   + (f"  REFUSED, not served: {refused}" if refused else ""))


@app.command()
def show(name: Annotated[str, typer.Argument(help="adapter name")], home: HomeOpt = None) -> None:
    """Everything recorded about one adapter (JSON): base, method, data, hyper-parameters, metrics, size."""
    from ragtune.models.adapters import AdapterRegistry

    print_json(AdapterRegistry(home).get(name))


@app.command()
def scope(
    name: Annotated[str, typer.Argument(help="adapter name")],
    reader: Annotated[list[str], typer.Option("--reader", help="an ACL token allowed to use it (repeatable): "
                                                                "public, group:hr, user:ana")],
    home: HomeOpt = None,
) -> None:
    """Say who may use an adapter that recorded no scope (trained before scopes, or on a file of
    unknown provenance: until then only admins may). A recorded scope can only be narrowed: a
    wider one would serve text to principals who may not read it."""
    from ragtune.cli.common import fail
    from ragtune.models.adapters import AdapterRegistry
    from ragtune.types import Scope

    registry = AdapterRegistry(home)
    old = Scope.from_list(registry.get(name).get("scope"))
    new = Scope.of([reader])
    if old is not None and not old.includes_holders_of(reader):
        fail(f"adapter {name!r} was trained on text scoped {old.to_list()}; {reader} would let in principals "
             "outside it (only narrowing is allowed)")
    registry.update(name, scope=new.to_list(), scope_set_by="ragtune adapters scope")
    typer.echo(f"adapter {name}: usable by {', '.join(reader)} (and admins)")


@app.command()
def delete(
    name: Annotated[str, typer.Argument(help="adapter name")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="do not ask for confirmation")] = False,
    home: HomeOpt = None,
) -> None:
    """Remove an adapter and its files."""
    from ragtune.models.adapters import AdapterRegistry

    registry = AdapterRegistry(home)
    path = registry.path(name)
    if not yes:
        typer.confirm(f"delete adapter {name!r} ({path})?", abort=True)
    registry.delete(name)
    typer.echo(f"deleted adapter {name}")


@app.command()
def merge(
    name: Annotated[str, typer.Argument(help="adapter name (lora, qlora or ia3)")],
    out: Annotated[Path, typer.Option("--out", help="new folder for the merged model")],
    home: HomeOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Fold the adapter into its base model and save a plain Hugging Face model folder for export."""
    from ragtune.train.merge import merge_adapter

    path = merge_adapter(name, out, home)
    size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    if json_:
        print_json({"name": name, "path": str(path), "size_bytes": size})
    else:
        typer.echo(f"merged {name} into {path} ({size / 1e6:.0f} MB)")
