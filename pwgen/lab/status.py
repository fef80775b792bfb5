"""What of a lab is alive: per site, its login address, daemons and the scheduler's view."""

from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from rich import box
from rich.table import Table

from pwgen.lab import daemons, nodes, pbs
from pwgen.lab.errors import LabError
from pwgen.lab.state import LabState, SiteRecord


@dataclass(frozen=True)
class SiteStatus:
    label: str
    login_ip: str
    user: str
    nodes_up: int  # holders alive
    nodes: int
    sshd: bool
    munged: int  # nodes whose munged runs
    slurmctld: bool
    slurmd: int  # compute nodes whose slurmd runs
    compute_nodes: int
    sinfo: str  # a PBS site: pbsnodes and queues
    scheduler: str = "slurm"
    pbs: dict[str, int] = field(default_factory=dict)  # PBS daemon -> nodes running it

    @property
    def healthy(self) -> bool:
        return self.nodes_up == self.nodes and self.sshd and self._scheduler_up

    @property
    def _scheduler_up(self) -> bool:
        if self.scheduler == pbs.SCHEDULER:
            expected = {d.name: len(self.pbs_nodes(d)) for d in pbs.DAEMONS}
            return self.pbs == expected
        return self.munged == self.nodes and self.slurmctld and self.slurmd == self.compute_nodes

    def pbs_nodes(self, daemon: daemons.Daemon) -> range:
        return range(self.compute_nodes if daemon.roles == ("compute",) else 1)


def pbs_site_status(site: SiteRecord, prefix: Path) -> SiteStatus:
    """A PBS site: sshd, each PBS daemon, pbsnodes (no munge or Slurm there)."""
    counts = {d.name: 0 for d in pbs.DAEMONS}
    for node in site.nodes:
        for name, up in pbs.running(node).items():
            counts[name] += up
    base = site_status(site, lambda login: pbs.pbsnodes_summary(login, prefix))
    return replace(base, scheduler=pbs.SCHEDULER, pbs=counts)


def site_status(
    site: SiteRecord, summary: Callable[[SiteRecord], str] = lambda s: sinfo_summary(s)
) -> SiteStatus:
    def running(daemon: daemons.Daemon) -> list[bool]:
        return [
            daemons.pid_of(node, daemon) is not None
            for node in site.nodes
            if node.role in daemon.roles
        ]

    login_up = nodes.holder_alive(site.login)
    return SiteStatus(
        label=site.label,
        login_ip=site.login_ip,
        user=site.user,
        nodes_up=sum(nodes.holder_alive(node) for node in site.nodes),
        nodes=len(site.nodes),
        sshd=all(running(daemons.SSHD)),
        munged=sum(running(daemons.MUNGED)),
        slurmctld=all(running(daemons.SLURMCTLD)),
        slurmd=sum(running(daemons.SLURMD)),
        compute_nodes=len(site.computes),
        sinfo=summary(site) if login_up else "login node down",
    )


def sinfo_summary(site: SiteRecord) -> str:
    """`compute*: 2 idle; debug: 2 idle`, from sinfo on the login node."""
    try:
        out = nodes.run_in(site.login, ["sinfo", "-h", "-o", "%P %D %T"], timeout=10)
    except LabError as err:
        return f"sinfo failed: {err}"
    groups: dict[str, list[str]] = {}
    for line in out.splitlines():
        partition, count, state = line.split()
        groups.setdefault(partition, []).append(f"{count} {state}")
    return "; ".join(f"{part}: {', '.join(states)}" for part, states in groups.items())


def collect(state: LabState) -> list[SiteStatus]:
    return [
        pbs_site_status(site, Path(state.pbs.prefix))
        if state.pbs is not None and pbs.is_pbs(site)
        else site_status(site)
        for site in state.sites
    ]


def as_json(state: LabState, statuses: list[SiteStatus]) -> dict[str, Any]:
    return {
        "state_dir": state.state_dir,
        "prefix": state.prefix,
        "subnet": state.subnet,
        "sites": [{**asdict(status), "healthy": status.healthy} for status in statuses],
        "flux": state.flux.model_dump() if state.flux else None,
        "pbs": state.pbs.model_dump() if state.pbs else None,
    }


def flux_line(state: LabState) -> str | None:
    """`Flux 0.88.0 at PREFIX (site lab2)`, when the lab has Flux."""
    if state.flux is None or not state.sites:
        return None
    return f"Flux {state.flux.version} at {state.flux.prefix} (site {state.sites[-1].label})"


def _mark(ok: bool) -> str:
    return "[green]up[/]" if ok else "[red]down[/]"


def _count(up: int, total: int) -> str:
    color = "green" if up == total else "red"
    return f"[{color}]{up}/{total}[/]"


def table(state: LabState, statuses: list[SiteStatus]) -> Table:
    grid = Table(
        title=f"pwgen lab {state.prefix} ({state.subnet}) in {state.state_dir}",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        collapse_padding=True,
        caption=flux_line(state),
        caption_justify="left",
    )
    for column in ("site", "scheduler", "login", "nodes", "sshd", "daemons"):
        grid.add_column(column, no_wrap=True)
    grid.add_column("nodes and queues")
    for status in statuses:
        grid.add_row(
            status.label,
            status.scheduler,
            status.login_ip,
            _count(status.nodes_up, status.nodes),
            _mark(status.sshd),
            _daemons(status),
            status.sinfo.replace(": ", " ").replace("; ", "\n"),
        )
    return grid


def _daemons(status: SiteStatus) -> str:
    """`munged 3/3` and the like, one daemon a line: how many of its nodes run it."""
    if status.scheduler == pbs.SCHEDULER:
        counts = [
            (d.name.removesuffix(".bin"), status.pbs[d.name], len(status.pbs_nodes(d)))
            for d in pbs.DAEMONS
        ]
    else:
        counts = [
            ("munged", status.munged, status.nodes),
            ("slurmctld", int(status.slurmctld), 1),
            ("slurmd", status.slurmd, status.compute_nodes),
        ]
    return "\n".join(f"{name} {_count(up, total)}" for name, up, total in counts)
