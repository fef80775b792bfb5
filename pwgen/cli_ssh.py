"""`pwgen ssh open|close SITE`: a site's master held open by the user (MFA, passwords).

pwgen's own ssh never prompts; a site that asks for a code at each login gets a master
the user opens once at the terminal, which every pwgen command then joins and no run
stops (pwgen.ssh.hold).
"""

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from pwgen.cli_options import (
    STATE,
    STATE_DIR,
    KnownHostsOption,
    SitesOption,
    load_site_list,
    trusted_known_hosts,
)

if TYPE_CHECKING:
    from pwgen.sites import Site

ssh_app = typer.Typer(
    help="Hold a site's ssh master open (sites that ask for an MFA code or a password).",
    no_args_is_help=True,
)
SiteArgument = Annotated[str, typer.Argument(help="The site's label.")]


@ssh_app.command("open")
def open_master(
    site: SiteArgument,
    sites: SitesOption = Path("sites.yaml"),
    known_hosts: KnownHostsOption = None,
    accept_new_host_keys: Annotated[
        bool, typer.Option(help="Record an unknown host key on first contact.")
    ] = False,
) -> None:
    """Log in to the site once, here (answer its prompts); pwgen uses that master until
    `pwgen ssh close SITE`."""
    from pwgen.ssh import prepare_ssh
    from pwgen.ssh.hold import open_master as hold_open

    remote = _remote_sites(sites, site)
    trusted = trusted_known_hosts(sites, known_hosts)
    ssh = prepare_ssh(remote, STATE_DIR, trusted, accept_new_host_keys)  # the config: all
    pid = hold_open(ssh.command(site))
    typer.echo(f"{site}: master pid {pid} held open; `pwgen ssh close {site}` ends it")


@ssh_app.command("close")
def close_master(site: SiteArgument) -> None:
    """Let the site's held master go (it stops unless a pwgen run still uses it)."""
    from pwgen.ssh import SshSetup
    from pwgen.ssh.hold import close_master as hold_close

    ssh = SshSetup(STATE.ssh_config, STATE.known_hosts)
    if not STATE.ssh_config.is_file():
        raise typer.BadParameter(f"no {STATE.ssh_config}: nothing was opened here")
    stopped = hold_close(ssh.command(site))
    typer.echo(f"{site}: master {'stopped' if stopped else 'released (a run still uses it)'}")


def _remote_sites(sites: Path, label: str) -> "list[Site]":
    """The remote sites of the sites file, which must hold remote site `label`."""
    loaded = load_site_list(sites)
    chosen = [site for site in loaded if site.label == label]
    if not chosen:
        raise typer.BadParameter(f"no site {label!r} in {sites}")
    if chosen[0].is_local:
        raise typer.BadParameter(f"site {label!r} is this machine: no ssh")
    return [site for site in loaded if not site.is_local]
