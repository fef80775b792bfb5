"""`up` converges the machine to the asked-for lab; `down` removes every trace of it.

`up` is safe to repeat: it keeps what is intact, rebuilds a site whose network
is broken or whose shape changed, restarts dead daemons, and adds or removes
sites when --sites changes.
"""

import contextlib
import fcntl
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from pwgen.lab import daemons, net, nodes, pbs, users
from pwgen.lab.controller import (
    controller_files,
    ensure_client_key,
    remove_controller_files,
    write_controller_files,
)
from pwgen.lab.errors import LabError
from pwgen.lab.flux import FluxBuild, check_source, ensure_flux
from pwgen.lab.pbs_build import PbsBuild, check_tarball, ensure_pbs
from pwgen.lab.plan import LabOptions, SitePlan, site_plans
from pwgen.lab.procs import kill_netns_processes
from pwgen.lab.sitefiles import node_mounts, reset_slurmctld_state, site_dir, write_site
from pwgen.lab.state import (
    FluxRecord,
    LabState,
    NodeRecord,
    PbsRecord,
    SiteRecord,
    load_state,
    record_from_plan,
    save_state,
)
from pwgen.lab.system import Hardware, ensure_packages, hardware, require_root

Progress = Callable[[str], None]
LOCK_FILE = ".lock"


def _quiet(_: str) -> None:
    pass


@dataclass
class UpResult:
    state: LabState
    actions: list[str] = field(default_factory=list)  # what this `up` changed
    installed: list[str] = field(default_factory=list)
    flux: FluxBuild | None = None
    pbs: PbsBuild | None = None
    seconds: float = 0.0


@contextlib.contextmanager
def _locked(state_dir: Path) -> Iterator[None]:
    """One `up` or `down` at a time per state dir."""
    with (state_dir / LOCK_FILE).open("a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LabError(f"another `pwgen lab` command is working on {state_dir}") from None
        yield


def up(options: LabOptions, install: bool = False, progress: Progress = _quiet) -> UpResult:
    started = time.monotonic()
    require_root()
    installed = ensure_packages(install)
    plans = site_plans(options)
    state = load_state(options.state_dir) or _new_state(options)
    if options.flux:
        check_source(options.flux)  # a wrong tarball is refused before anything else
    if options.pbs and options.wants_pbs:
        check_tarball(options.pbs)
    _preflight(state, plans, options)  # a user error leaves nothing behind
    # Per machine, with a lock of its own: built before this lab's lock is taken.
    flux = ensure_flux(options.flux, progress=progress) if options.flux else None
    pbs_build = _ensure_pbs_build(options, progress)
    options.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    with _locked(options.state_dir):
        state = load_state(options.state_dir) or state
        state.flux = _flux_record(options.flux, flux)
        # Kept when no site is PBS any more: `down` of the old PBS sites still needs it.
        state.pbs = _pbs_record(options.pbs, pbs_build) or state.pbs
        result = UpResult(state, installed=installed, flux=flux, pbs=pbs_build)
        _converge(options, state, plans, result, progress)
    result.seconds = time.monotonic() - started
    return result


def _flux_record(source: str | None, build: FluxBuild | None) -> FluxRecord | None:
    if source is None or build is None:
        return None
    return FluxRecord(
        source=source, sha256=build.sha256, prefix=str(build.prefix), version=build.version
    )


def _ensure_pbs_build(options: LabOptions, progress: Progress) -> PbsBuild | None:
    if not (options.pbs and options.wants_pbs):
        return None
    return ensure_pbs(options.pbs, progress=progress)


def _pbs_record(source: str | None, build: PbsBuild | None) -> PbsRecord | None:
    if source is None or build is None:
        return None
    return PbsRecord(
        source=source, sha256=build.sha256, prefix=str(build.prefix), version=build.version
    )


def _new_state(options: LabOptions) -> LabState:
    return LabState(
        prefix=options.prefix,
        subnet=str(options.subnet),
        compute_nodes=options.compute_nodes,
        state_dir=str(options.state_dir),
    )


def _preflight(state: LabState, plans: list[SitePlan], options: LabOptions) -> None:
    _check_same_lab(state, options)
    _check_route_clashes(state, options)
    for plan in plans:
        if state.site(plan.label) is None:
            _check_new_site(plan)


def _converge(
    options: LabOptions,
    state: LabState,
    plans: list[SitePlan],
    result: UpResult,
    progress: Progress,
) -> None:
    _drop_stale_sites(state, plans, result, progress)
    state.compute_nodes = options.compute_nodes
    if state.unreachable_route is None:
        state.unreachable_route = str(options.subnet)
        save_state(state)
    net.add_unreachable(state.unreachable_route)  # `replace`: restores a deleted route too
    progress("writing site files")
    hw = hardware()
    pubkey = ensure_client_key(options.state_dir)
    for plan in plans:
        _ensure_site(state, plan, options, hw, pubkey, result)
    save_state(state)
    progress("starting nodes")
    _ensure_holders(state, result)
    progress("starting daemons")
    _ensure_daemons(state, result)
    pbs_sites = [site for site in state.sites if pbs.is_pbs(site)]
    if state.pbs is not None and pbs_sites:
        progress("starting PBS")
        result.actions += pbs.ensure_sites(pbs_sites, Path(state.pbs.prefix))
    progress("waiting for Slurm nodes")
    daemons.wait_nodes_ready([site for site in state.sites if not pbs.is_pbs(site)])
    write_controller_files(state)
    state.files = [str(path) for path in controller_files(options.state_dir)]
    save_state(state)


def _check_same_lab(state: LabState, options: LabOptions) -> None:
    if (state.prefix, state.subnet) != (options.prefix, str(options.subnet)):
        raise LabError(
            f"the lab in {state.state_dir} uses --name {state.prefix} --subnet {state.subnet}: "
            "run `pwgen lab down` first, or use another --state-dir"
        )


def _drop_stale_sites(
    state: LabState, plans: list[SitePlan], result: UpResult, progress: Progress
) -> None:
    """Remove sites beyond --sites, and sites whose shape changed (rebuilt below)."""
    wanted = {plan.label: plan for plan in plans}
    stale = [s for s in state.sites if s.label not in wanted or not s.matches(wanted[s.label])]
    if stale:
        progress(f"removing {', '.join(site.label for site in stale)}")
        _remove_sites(state, stale)
        result.actions += [f"removed site {site.label}" for site in stale]


def _check_route_clashes(state: LabState, options: LabOptions) -> None:
    own_route = state.unreachable_route is not None
    clashes = net.route_clashes(options.subnet, state.root_ifs, own_route)
    if clashes:
        raise LabError(
            f"--subnet {options.subnet} overlaps this machine's route {clashes[0]} "
            "(another lab?): choose another --subnet"
        )


def _check_new_site(plan: SitePlan) -> None:
    """Never adopt a namespace, link or user this lab did not create."""
    taken = net.existing_netns() & {node.netns for node in plan.nodes}
    hint = "(another lab with the same --name?): use another --name"
    if taken:
        raise LabError(f"network namespace {sorted(taken)[0]} already exists {hint}")
    if plan.root_if in net.root_links():
        raise LabError(f"network interface {plan.root_if} already exists {hint}")
    if users.exists(plan.user):
        raise LabError(f"user {plan.user} already exists {hint}")


def _ensure_site(
    state: LabState,
    plan: SitePlan,
    options: LabOptions,
    hw: Hardware,
    pubkey: str,
    result: UpResult,
) -> None:
    record = state.site(plan.label)
    directory = site_dir(options.state_dir, plan.label)
    if record is None:
        extra = pbs.node_mounts(directory) if pbs.is_pbs(plan) else None
        record = record_from_plan(plan, directory, node_mounts(directory, extra))
        state.sites.append(record)
        state.sites.sort(key=lambda site: site.index)
        save_state(state)  # recorded before anything exists: `down` can always clean up
        result.actions.append(f"created site {plan.label}")
    users.ensure_user(plan.user, plan.label)
    conf_changed = write_site(plan, directory, hw, pubkey, options.prefix)
    if pbs.is_pbs(plan) and state.pbs is not None:
        pbs.write_files(plan, directory, Path(state.pbs.prefix))
    if not net.site_intact(plan):
        _kill(record.nodes)
        net.remove_site(record.root_if, [node.netns for node in record.nodes])
        net.build_site(plan)
        for node in record.nodes:
            node.holder_pid = None
        result.actions.append(f"built the network of {plan.label}")
    elif conf_changed:
        _stop_slurm(record)  # started again, with the new slurm.conf, below
    if conf_changed:
        reset_slurmctld_state(directory)


def _stop_slurm(site: SiteRecord) -> None:
    for node in site.nodes:
        for daemon in (daemons.SLURMCTLD, daemons.SLURMD):
            if node.role in daemon.roles:
                daemons.stop(node, daemon)


def _ensure_holders(state: LabState, result: UpResult) -> None:
    """Start the holder of every node that has none, all at once, then wait for them."""
    starting = []
    for site in state.sites:
        for node in site.nodes:
            if not nodes.holder_alive(node):
                # Daemons that outlived their holder run in a mount namespace nobody can join.
                _kill([node])
                node.holder_pid = nodes.start_holder(node, Path(site.site_dir))
                starting.append((node, Path(site.site_dir)))
    save_state(state)
    nodes.wait_holders([node for node, _ in starting], [where for _, where in starting])
    result.actions += [f"started node {node.name}" for node, _ in starting]


def _ensure_daemons(state: LabState, result: UpResult) -> None:
    """Daemon by daemon across all nodes, so the waits overlap."""
    for daemon in daemons.DAEMONS:
        started = [
            (site, node)
            for site in state.sites
            for node in site.nodes
            if node.role in daemon.roles
            and (daemon is daemons.SSHD or not pbs.is_pbs(site))  # PBS sites: no munge, Slurm
            and daemons.ensure(node, daemon)
        ]
        for site, node in started:
            daemons.wait_started(node, daemon, site)
        result.actions += [f"started {daemon.name} on {node.name}" for _, node in started]


def _kill(members: list[NodeRecord]) -> None:
    """Kill every process of these nodes (found by namespace, not by name)."""
    kill_netns_processes([node.netns for node in members], [node.holder_pid for node in members])


def _remove_sites(state: LabState, sites: list[SiteRecord]) -> None:
    for site in sites:
        if pbs.is_pbs(site) and state.pbs is not None:
            pbs.stop_site(site, Path(state.pbs.prefix))  # the datastore's postgres shuts down
    _kill([node for site in sites for node in site.nodes])
    for site in sites:
        net.remove_site(site.root_if, [node.netns for node in site.nodes])
        users.remove_user(site.user)
        shutil.rmtree(site.site_dir, ignore_errors=True)
        state.sites.remove(site)
        save_state(state)


@dataclass
class DownResult:
    prefix: str
    sites: list[str]
    seconds: float


def down(state_dir: Path, progress: Progress = _quiet) -> DownResult | None:
    """Remove the lab recorded in `state_dir`; None when there is none."""
    started = time.monotonic()
    require_root()
    state_dir = state_dir.absolute()
    state = load_state(state_dir)
    if state is None:
        return None
    result = DownResult(state.prefix, [site.label for site in state.sites], 0.0)
    with _locked(state_dir):
        progress("stopping nodes")
        _remove_sites(state, list(state.sites))
        if state.unreachable_route:
            net.remove_unreachable(state.unreachable_route)
        remove_controller_files(state_dir)
        with contextlib.suppress(OSError):
            (state_dir / "sites").rmdir()
        (state_dir / "lab.json").unlink(missing_ok=True)
        (state_dir / LOCK_FILE).unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        os.rmdir(state_dir)  # only if nothing else of the user's is in it
    # Undo `ip netns add`'s mount of /run/netns once no namespace (of any lab) is left.
    net.release_netns_dir()
    pbs.release_bind_targets()
    result.seconds = time.monotonic() - started
    return result
