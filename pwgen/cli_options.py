"""What the `pwgen` commands share: the project's state dir, the options every command
spells the same way, and reading the sites (a file, or `pw`: the PW API)."""

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from pwgen.layout import StateLayout

if TYPE_CHECKING:
    from pwgen.sites import Site

#: The project's working state, `.pwgen/` under the current directory.
STATE = StateLayout()
STATE_DIR = STATE.root

SitesOption = Annotated[
    Path,
    typer.Option(
        "--sites",
        "-s",
        help="Sites file (YAML), or `pw`: the clusters of your Parallel Works account "
        "($PW_API_KEY).",
        envvar="PWGEN_SITES",
    ),
]
KnownHostsOption = Annotated[
    list[Path] | None,
    typer.Option(
        "--known-hosts",
        help="Trust the host keys in this file (repeatable); a known_hosts next to the "
        "sites file is used only when named here, confirmed at the prompt, or written "
        "by `pwgen lab`.",
    ),
]


def is_pw(sites: Path) -> bool:
    from pwgen.sources import PW_SOURCE

    return str(sites) == PW_SOURCE


def load_site_list(sites: Path) -> "list[Site]":
    """A sites file, or `pw`: the PW account's usable clusters, asked now."""
    from pwgen.report import warn_skipped
    from pwgen.sources import load_source

    loaded = load_source(str(sites))
    warn_skipped(loaded.skipped)
    return loaded.sites


def trusted_known_hosts(sites: Path, named: list[Path] | None) -> list[Path]:
    """The files named with --known-hosts, and the sites file's neighbour if trusted."""
    from pwgen.ssh import adjacent_known_hosts

    def confirm(path: Path) -> bool:
        return typer.confirm(f"Trust the host keys in {path} (next to the sites file)?")

    if is_pw(sites):  # no sites file: only the files named
        return list(named or [])
    pinned = StateLayout(STATE_DIR).known_hosts
    return adjacent_known_hosts(sites, pinned, confirm) + list(named or [])
