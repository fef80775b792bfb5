"""The status report: gathering sites, tunnels, blocks and runs, and its JSON form."""

import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pwgen.errors import PwgenError
from pwgen.facts import FactsError, read_facts
from pwgen.layout import StateLayout
from pwgen.manifest import RunState
from pwgen.status.probe import Job, relay_pidfile_of
from pwgen.status.processes import LocalProcess, scan_processes
from pwgen.status.remote import master_pid, probe_site
from pwgen.status.runs import RunInfo, list_runs

if TYPE_CHECKING:
    from pwgen.sites import Site


@dataclass
class TunnelHealth:
    """A live or crashed run's worker-port path on one site."""

    run_id: str
    run_state: RunState
    port: int | None
    forward: bool  # something listens on the login node's 127.0.0.1:port
    relay_pid: int | None  # the run's pwgen-relay, if it runs
    certs: bool  # the run's cert copy is still on the site


@dataclass
class SiteStatus:
    label: str
    scheduler: str
    local: bool = False
    facts: dict[str, Any] | None = None
    facts_error: str | None = None
    master_pid: int | None = None
    reachable: bool | None = None
    error: str | None = None
    user: str | None = None
    blocks: list[Job] = field(default_factory=list)
    blocks_error: str | None = None
    tunnels: list[TunnelHealth] = field(default_factory=list)
    worker_pools: int = 0


@dataclass
class StatusReport:
    state_dir: str
    ssh_config: str | None
    sites: list[SiteStatus]
    runs: list[RunInfo]
    controller: list[LocalProcess]
    elapsed: float = 0.0


def _facts_summary(state: StateLayout, label: str) -> tuple[dict[str, Any] | None, str | None]:
    """What status shows of a site's facts, or why they cannot be read (never raises)."""
    try:
        facts = read_facts(state.facts_dir, label)
    except FactsError as err:
        return None, str(err)
    return {
        "env_hash": facts.env.hash if facts.env else None,
        "env_path": facts.env_dir,
        "parsl": facts.parsl_version,
        "python": facts.python.version if facts.python else None,
        "scheduler": facts.scheduler,
        "workdir": facts.workdir,
        "gathered_at": facts.gathered_at,
    }, None


def _site_labels(
    sites: "Sequence[Site] | None", state: StateLayout
) -> list[tuple[str, str | None, bool]]:
    """(label, scheduler, local) of the sites to show: the sites file's, else those with facts."""
    if sites is not None:
        return [(site.label, site.scheduler, site.is_local) for site in sites]
    try:
        names = sorted(path.stem for path in state.facts_dir.glob("*.json"))
    except OSError:
        names = []
    return [(name, None, False) for name in names]


def gather_status(
    state_dir: Path, sites: "Sequence[Site] | None" = None, last: int = 10
) -> StatusReport:
    """Sites (facts, master, blocks, tunnels), the last `last` runs, orphaned processes."""
    if last < 0:
        raise PwgenError(f"--last {last}: the number of runs to show cannot be negative")
    clock = time.monotonic()
    state = StateLayout(state_dir)
    ssh_config = state.ssh_config
    processes = scan_processes(state.runs_dir)
    runs = list_runs(state_dir, processes)
    live_or_crashed = [run for run in runs if run.alive or run.unfinished]
    job_owner = {
        name: run.run_id for run in runs for site in run.remote.values() for name in site.job_names
    }
    statuses: list[SiteStatus] = []
    for label, scheduler, local in _site_labels(sites, state):
        status = SiteStatus(label=label, scheduler=scheduler or "", local=local)
        if not local:
            status.facts, status.facts_error = _facts_summary(state, label)
            if not status.scheduler:
                status.scheduler = str((status.facts or {}).get("scheduler") or "slurm")
        statuses.append(status)
    remote = [status for status in statuses if not status.local]
    if remote and ssh_config.is_file():
        with ThreadPoolExecutor(max_workers=min(16, len(remote))) as pool:
            for _ in pool.map(
                lambda s: _fill_site(s, ssh_config, live_or_crashed, job_owner), remote
            ):
                pass
    else:
        for status in remote:
            status.reachable = False
            status.error = f"no {ssh_config}: run `pwgen provision` first"
    return StatusReport(
        state_dir=str(state_dir),
        ssh_config=str(ssh_config) if ssh_config.is_file() else None,
        sites=statuses,
        runs=runs[:last],
        controller=[proc for proc in processes if proc.kind != "controller"],
        elapsed=time.monotonic() - clock,
    )


def _fill_site(
    status: SiteStatus,
    ssh_config: Path,
    runs: Sequence[RunInfo],
    job_owner: Mapping[str, str],
) -> None:
    try:
        _probe_into(status, ssh_config, runs, job_owner)
    except Exception as err:  # status shows every site, whatever happens on one
        status.reachable = False
        status.error = f"status failed: {err!r}"


def _probe_into(
    status: SiteStatus,
    ssh_config: Path,
    runs: Sequence[RunInfo],
    job_owner: Mapping[str, str],
) -> None:
    status.master_pid = master_pid(ssh_config, status.label)
    mine = [(run, run.remote[status.label]) for run in runs if status.label in run.remote]
    dirs = [path for _, site in mine for path in site.site_dirs]
    probe = probe_site(ssh_config, status.label, status.scheduler, dirs)
    status.reachable = probe.ok
    status.error = probe.error
    status.user = probe.user
    if not probe.ok:
        return
    status.blocks_error = probe.jobs_error
    status.blocks = [
        Job(job.job_id, job.name, job.state, job_owner.get(job.name))
        for job in probe.jobs
        if job.name.startswith("parsl.")
    ]
    status.worker_pools = len(probe.pools)
    relays = {relay_pidfile_of(relay.command): relay.pid for relay in probe.relays}
    for run, site in mine:
        relay_pid = next(
            (relays[f"{d}/relay.pid"] for d in site.site_dirs if f"{d}/relay.pid" in relays),
            None,
        )
        status.tunnels.append(
            TunnelHealth(
                run_id=run.run_id,
                run_state=run.state,
                port=site.port,
                forward=site.port is not None
                and any(port == site.port for port, _ in probe.loopback),
                relay_pid=relay_pid,
                certs=any(d in probe.cert_dirs for d in site.site_dirs),
            )
        )


def status_json(report: StatusReport) -> dict[str, Any]:
    """The report as plain JSON types (runs get `duration`)."""
    data = asdict(report)
    for run, raw in zip(report.runs, data["runs"], strict=True):
        raw["duration"] = run.duration
    return data
