"""`pwgen lab ...`: typer commands only; the work is in lifecycle.py and status.py.

Mounted by pwgen/cli.py as `app.add_typer(lab_app, name="lab")`; every user
error is a LabError (a PwgenError), printed by pwgen's main() as one line.
"""

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from pwgen.lab.errors import LabError
from pwgen.lab.flux import RELEASE, RELEASE_VERSION
from pwgen.lab.pbs_build import TARBALL_ENV
from pwgen.lab.plan import (
    DEFAULT_PREFIX,
    DEFAULT_STATE_DIR,
    DEFAULT_SUBNET,
    LabOptions,
    make_options,
)

if TYPE_CHECKING:  # the commands import the lab's modules: every pwgen command starts fast
    from pwgen.lab.state import LabState

app = typer.Typer(
    help="A multi-site HPC lab on this machine: sshd + Slurm + munge in network namespaces.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
_out = Console(highlight=False)
_err = Console(stderr=True, highlight=False)

DEFAULT_SITES = 2
DEFAULT_COMPUTE_NODES = 2

StateDir = Annotated[
    Path,
    typer.Option(
        "--state-dir", help="Where the lab's files live.", envvar="PWGEN_LAB_DIR", show_default=True
    ),
]


def _options(
    state_dir: Path,
    sites: int | None,
    compute: int | None,
    name: str | None,
    subnet: str | None,
    flux: str | None = None,
    schedulers: str | None = None,
    pbs: str | None = None,
) -> LabOptions:
    """Options given on the command line, else those of the existing lab, else defaults."""
    from pwgen.lab.state import load_state

    state = load_state(state_dir.absolute())
    flux = flux or (state.flux.source if state and state.flux else None)
    pbs = pbs or (state.pbs.source if state and state.pbs else None)
    kept = tuple(site.scheduler for site in state.sites) if state else ()
    per_site = tuple(schedulers.split(",")) if schedulers else kept
    if sites is None and len(per_site) > 1:
        sites = len(per_site)  # `--schedulers slurm,pbspro`: two sites
    return make_options(
        prefix=name or (state.prefix if state else DEFAULT_PREFIX),
        subnet=subnet or (state.subnet if state else DEFAULT_SUBNET),
        sites=_given(sites, len(state.sites) if state and state.sites else DEFAULT_SITES),
        compute_nodes=_given(compute, state.compute_nodes if state else DEFAULT_COMPUTE_NODES),
        state_dir=state_dir,
        flux=flux,
        schedulers=per_site if len(set(per_site)) > 1 else per_site[:1],
        pbs=pbs,
    )


def _given(value: int | None, default: int) -> int:
    return default if value is None else value


@app.command()
def up(
    sites: Annotated[
        int | None,
        typer.Option(
            "--site-count",
            help="Number of sites (default 2; a lab that is up keeps its own). "
            "Not --sites: elsewhere that names a sites file.",
        ),
    ] = None,
    compute_nodes: Annotated[
        int | None,
        typer.Option(
            "--compute-nodes",
            "-m",
            help="Compute nodes per site (default 2; a lab that is up keeps its own).",
        ),
    ] = None,
    install: Annotated[
        bool, typer.Option("--install", help="apt-get install missing Debian packages.")
    ] = False,
    name: Annotated[
        str | None,
        typer.Option(
            "--name", help=f"Prefix of namespaces, links and users (default {DEFAULT_PREFIX})."
        ),
    ] = None,
    subnet: Annotated[
        str | None,
        typer.Option("--subnet", help=f"The lab's private IPv4 range (default {DEFAULT_SUBNET})."),
    ] = None,
    flux: Annotated[
        str | None,
        typer.Option(
            "--flux",
            metavar="TARBALL",
            envvar="PWGEN_FLUX_TARBALL",
            help="Build (once per machine) or reuse flux-core from this release tarball "
            f"('{RELEASE}': download the pinned {RELEASE_VERSION}); the last site becomes "
            "a Flux site. A lab that has Flux keeps it.",
        ),
    ] = None,
    scheduler: Annotated[
        str | None,
        typer.Option(
            "--scheduler", help="slurm or pbspro, for every site (a lab that is up keeps its own)."
        ),
    ] = None,
    schedulers: Annotated[
        str | None,
        typer.Option(
            "--schedulers",
            metavar="LIST",
            help="The scheduler of each site, e.g. slurm,pbspro (sets the site count).",
        ),
    ] = None,
    pbs_tarball: Annotated[
        str | None,
        typer.Option(
            "--pbs-tarball",
            metavar="TARBALL",
            envvar=TARBALL_ENV,
            help="OpenPBS source tarball for pbspro sites, built once per machine (its "
            "*.patch files next to it are applied).",
        ),
    ] = None,
    state_dir: StateDir = DEFAULT_STATE_DIR,
) -> None:
    """Bring the lab up (again): safe to repeat; restarts dead daemons; grows or shrinks."""
    from pwgen.lab import lifecycle, status
    from pwgen.lab.controller import SITES_FILE, SSH_CONFIG

    if scheduler and schedulers:
        raise LabError("give --scheduler (every site) or --schedulers (each site), not both")
    options = _options(
        state_dir, sites, compute_nodes, name, subnet, flux, scheduler or schedulers, pbs_tarball
    )
    with _err.status("pwgen lab up") as spinner:
        result = lifecycle.up(options, install, lambda text: spinner.update(f"lab up: {text}"))
    if result.installed:
        _err.print(f"installed {' '.join(result.installed)}")
    if result.flux:
        done = "built" if result.flux.built else "reused"
        _err.print(f"flux {result.flux.version} {done} in {result.flux.seconds:.1f} s")
    if result.pbs:
        done = "built" if result.pbs.built else "reused"
        _err.print(f"openpbs {result.pbs.version} {done} in {result.pbs.seconds:.1f} s")
    _err.print(f"lab up in {result.seconds:.1f} s: {_summary(result.actions)}")
    _out.print(status.table(result.state, status.collect(result.state)))
    first = result.state.sites[0].label
    _out.print(
        f"sites: {options.state_dir / SITES_FILE}\n"
        f"ssh:   pwgen lab ssh {first}   or   ssh -F {options.state_dir / SSH_CONFIG} {first}"
    )


def _summary(actions: list[str]) -> str:
    if not actions:
        return "already up, nothing to do"
    if len(actions) <= 6:  # a repair: say exactly what was restarted
        return "; ".join(actions)
    return f"{len(actions)} changes"


@app.command()
def down(state_dir: StateDir = DEFAULT_STATE_DIR) -> None:
    """Remove the lab: namespaces, links, processes, users, routes and files."""
    from pwgen.lab import lifecycle

    with _err.status("pwgen lab down") as spinner:
        result = lifecycle.down(state_dir, lambda text: spinner.update(f"lab down: {text}"))
    if result is None:
        _err.print(f"no lab in {state_dir.absolute()}: nothing to do")
    else:
        sites = ", ".join(result.sites) or "no sites"
        _err.print(f"lab {result.prefix} down in {result.seconds:.1f} s (removed {sites})")


@app.command("status")
def status_(
    state_dir: StateDir = DEFAULT_STATE_DIR,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show each site's login address, daemons and sinfo; exit code 1 if anything is down."""
    from pwgen.lab import status

    state = _require_lab(state_dir)
    statuses = status.collect(state)
    if as_json:
        typer.echo(json.dumps(status.as_json(state, statuses), indent=2))
    else:
        _out.print(status.table(state, statuses))
    if not all(item.healthy for item in statuses):
        raise typer.Exit(1)


@app.command(
    context_settings={"allow_interspersed_args": False, "ignore_unknown_options": True},
)
def ssh(
    site: Annotated[str, typer.Argument(help="Site label, e.g. lab1.")],
    command: Annotated[list[str] | None, typer.Argument(help="Command to run there.")] = None,
    state_dir: StateDir = DEFAULT_STATE_DIR,
) -> None:
    """ssh to a site's login node as its user (interactive without a command)."""
    from pwgen.lab.controller import SSH_CONFIG
    from pwgen.ssh import SshCommand

    state = _require_lab(state_dir)
    if state.site(site) is None:
        labels = ", ".join(item.label for item in state.sites)
        raise LabError(f"no site {site!r} in the lab (sites: {labels})")
    config = Path(state.state_dir) / SSH_CONFIG
    argv = SshCommand(str(config), site).interactive(command or [])
    os.execvp(argv[0], argv)


def _require_lab(state_dir: Path) -> "LabState":
    from pwgen.lab.state import load_state

    state = load_state(state_dir.absolute())
    if state is None or not state.sites:
        raise LabError(f"no lab in {state_dir.absolute()}: run `pwgen lab up`")
    return state
