"""The `pwgen` commands about sites themselves: inventory, sites, schema, config (each
one step of the data flow: sites -> inventory, a frozen sites file, their schema, the
generated Parsl config)."""

import json
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer

from pwgen.cli_options import SitesOption, load_site_list


def register_site_commands(app: typer.Typer) -> None:
    """Add this module's commands to the `pwgen` app."""
    for command in (inventory, config, sites, schema):
        app.command()(command)


def inventory(
    source: Annotated[
        str, typer.Option("--from", help="`pw` (the PW API, key in $PW_API_KEY) or a sites file.")
    ],
    output: Annotated[
        Path,
        typer.Option(
            "--output", "-o", help="Inventory file to write (its directory is made); - for stdout."
        ),
    ] = Path("inventory/pwgen.yml"),
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON report.")] = False,
) -> None:
    """Turn sites into an Ansible inventory (written atomically)."""
    from pwgen.inventory import render_inventory, write_inventory
    from pwgen.sources import load_source

    loaded = load_source(source)
    if str(output) == "-":  # the inventory itself is the output: no report
        typer.echo(render_inventory(loaded.sites, loaded.name), nl=False)
        return
    write_inventory(loaded.sites, output, loaded.name)
    if as_json:
        report = {
            "inventory": str(output),
            "sites": [site.label for site in loaded.sites],
            "skipped": [asdict(skipped) for skipped in loaded.skipped],
        }
        typer.echo(json.dumps(report, indent=2))
        return
    from pwgen.report import print_sites, warn_skipped

    warn_skipped(loaded.skipped)
    print_sites(loaded.sites, title=f"{output} ({len(loaded.sites)} sites from {loaded.name})")


def config(
    sites: SitesOption = Path("sites.yaml"),
    output: Annotated[Path, typer.Option("--output", "-o", help="Config module to write.")] = Path(
        "parsl_config.py"
    ),
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON report.")] = False,
) -> None:
    """Write a readable Parsl config module (`config`) for the sites."""
    from pwgen.configgen import render_config
    from pwgen.fileio import atomic_write

    chosen = load_site_list(sites)
    atomic_write(output, render_config(chosen, source=str(sites)))
    if as_json:
        report = {"config": str(output), "sites": [site.label for site in chosen]}
        typer.echo(json.dumps(report, indent=2))
    else:
        typer.echo(f"wrote {output}")


def sites(
    source: Annotated[
        str, typer.Option("--from", help="`pw` (the PW API, key in $PW_API_KEY) or a sites file.")
    ],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="The sites file to write; - for stdout.")
    ] = Path("-"),
) -> None:
    """Freeze sites (e.g. the PW API's clusters now) into a sites.yaml you can edit."""
    from pwgen.fileio import atomic_write
    from pwgen.report import warn_skipped
    from pwgen.sources import load_source, render_sites_file

    loaded = load_source(source)
    warn_skipped(loaded.skipped)
    text = render_sites_file(loaded.sites, loaded.name)
    if str(output) == "-":
        typer.echo(text, nl=False)
        return
    atomic_write(output, text)
    typer.echo(f"wrote {output} ({len(loaded.sites)} sites from {loaded.name})")


def schema(
    markdown: Annotated[
        bool, typer.Option("--markdown", help="The reference page (docs/sites-reference.md).")
    ] = False,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write it here (default: stdout).")
    ] = None,
) -> None:
    """The JSON Schema of sites.yaml, generated from pwgen's models (or its reference)."""
    from pwgen.fileio import atomic_write
    from pwgen.schema import sites_reference, sites_schema

    text = sites_reference() if markdown else json.dumps(sites_schema(), indent=2) + "\n"
    if output is None:
        typer.echo(text, nl=False)
    else:
        atomic_write(output, text)
        typer.echo(f"wrote {output}")
