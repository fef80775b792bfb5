"""Tearing down one site: probe, plan, act, verify, and its ssh master."""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from pwgen.manifest import RunState
from pwgen.poll import poll
from pwgen.ssh import users as ssh_users
from pwgen.status import (
    RunInfo,
    RunSite,
    SiteProbe,
    probe_site,
    relay_pidfile_of,
    run_on_site,
    site_master,
)
from pwgen.teardown.model import Action, TeardownReport
from pwgen.teardown.script import action_script
from pwgen.tunnels.master import ControlMaster

#: Seconds the remote step may take (scancel, waiting for the queue, relays).
SITE_TIMEOUT = 60


def teardown_site(
    ssh_config: Path,
    label: str,
    items: Sequence[tuple[RunInfo, RunSite]],
    live: Sequence[RunInfo],
    report: TeardownReport,
) -> list[Action]:
    """Blocks, relays, pools and cert copies of the runs `items` on one site; its master.

    Never raises: an unexpected error is reported as a failed action.
    """
    run_ids = ",".join(run.run_id for run, _ in items)
    try:
        scheduler = items[0][1].scheduler
        dirs = [path for _, site in items for path in site.site_dirs]
        probe = probe_site(ssh_config, label, scheduler, dirs)
        if not probe.ok:
            return [Action(run_ids, label, "reach the site", ok=False, detail=probe.error or "")]
        owner = {name: run.run_id for run, site in items for name in site.job_names}
        dir_owner = {path: run.run_id for run, site in items for path in site.site_dirs}
        plan = _plan(probe, owner, dir_owner)
        actions: list[Action] = []
        after = probe
        if plan.any():
            problem = _act(ssh_config, label, scheduler, plan)
            after = probe_site(ssh_config, label, scheduler, dirs)
            actions += _verify(label, plan, after, problem, owner, dir_owner)
        actions += _master(ssh_config, label, items, live, report, after, found=plan.any())
        return actions
    except Exception as err:  # one site's trouble must not hide the others' results
        return [Action(run_ids, label, "tear down the site", ok=False, detail=repr(err))]


def _marker_args(site_dirs: Iterable[str]) -> list[str]:
    """Command-line words that make a worker pool one of these site dirs' pools."""
    return [f"--logdir={path}" for path in site_dirs]


@dataclass
class _Plan:
    jobs: list[tuple[str, str]]  # (job id, name)
    relays: list[tuple[int, str]]  # (pid, pid file)
    pools: list[tuple[int, str]]  # (pid, --logdir=... word)
    certs: list[str]  # site dirs whose certificates/ exists

    def any(self) -> bool:
        return bool(self.jobs or self.relays or self.pools or self.certs)


def _plan(probe: SiteProbe, owner: dict[str, str], dir_owner: dict[str, str]) -> _Plan:
    pidfiles = {f"{path}/relay.pid" for path in dir_owner}
    relays = []
    for relay in probe.relays:
        pidfile = relay_pidfile_of(relay.command)
        if pidfile in pidfiles:
            relays.append((relay.pid, pidfile))
    pools = []
    for pool in probe.pools:
        words = set(pool.command.split())
        marker = next((m for m in _marker_args(dir_owner) if m in words), None)
        if marker is not None:
            pools.append((pool.pid, marker))
    return _Plan(
        jobs=[(job.job_id, job.name) for job in probe.jobs if job.name in owner and job.active],
        relays=relays,
        pools=pools,
        certs=[path for path in probe.cert_dirs if path in dir_owner],
    )


def _act(ssh_config: Path, label: str, scheduler: str, plan: _Plan) -> str:
    """Run the plan on the site; returns a problem description ("" when it ran through)."""
    script = action_script(
        scheduler,
        [job_id for job_id, _ in plan.jobs],
        plan.relays,
        [f"{path}/{copy}" for path in plan.certs for copy in ("certificates", "staging")],
        plan.pools,
    )
    try:
        code, out, err = run_on_site(ssh_config, label, script, SITE_TIMEOUT)
    except OSError as error:
        return f"cannot run ssh: {error}"
    if "end|" in out.splitlines():
        return ""
    return " ".join(err.split()[-30:]) or f"exit {code}"


def _verify(
    label: str,
    plan: _Plan,
    after: SiteProbe,
    problem: str,
    owner: dict[str, str],
    dir_owner: dict[str, str],
) -> list[Action]:
    """One Action per planned item: done when the second probe no longer sees it."""
    if not after.ok:
        problem = problem or after.error or "the site did not answer the check"
    active = {job.job_id for job in after.jobs if job.active}
    relays = {relay.pid for relay in after.relays}
    pools = {pool.pid for pool in after.pools}
    actions: list[Action] = []

    def add(run: str, what: str, gone: bool, detail: str) -> None:
        ok = after.ok and gone
        actions.append(Action(run, label, what, ok, detail if ok else problem or "still there"))

    for job_id, name in plan.jobs:
        add(owner[name], f"cancelled job {job_id}", job_id not in active, name)
    for pid, pidfile in plan.relays:
        run = dir_owner.get(pidfile.rsplit("/", 1)[0], "")
        add(run, f"stopped relay pid {pid}", pid not in relays, pidfile)
    for pid, marker in plan.pools:
        run = dir_owner.get(marker.split("=", 1)[1], "")
        add(run, f"stopped worker pool pid {pid}", pid not in pools, marker)
    for path in plan.certs:
        gone = path not in after.cert_dirs
        add(dir_owner[path], "removed cert and staging copies", gone, path)
    return actions


def _master(
    ssh_config: Path,
    label: str,
    items: Sequence[tuple[RunInfo, RunSite]],
    live: Sequence[RunInfo],
    report: TeardownReport,
    after: SiteProbe,
    found: bool,
) -> list[Action]:
    """Stop the site's master, or only cancel the runs' forwards when it is shared."""
    master = site_master(ssh_config, label)
    pid = master.pid()
    if pid is None:
        return []
    first_time = any(run.state == RunState.CRASHED for run, _ in items)
    if not (first_time or found):
        return []
    users = [run.run_id for run in live if label in run.labels]
    if users or ssh_users.in_use(master.control_path()):
        used_by = f"running run {users[0]}" if users else "another live pwgen process"
        report.notes.append(f"{label}: ssh master pid {pid} kept: used by {used_by}")
        report.kept_masters.append(pid)
        return _cancel_forwards(master, label, items)
    # Another pwgen relay on the site: another project's live run shares this master.
    ours = {f"{path}/relay.pid" for _, site in items for path in site.site_dirs}
    others = [r.pid for r in after.relays if relay_pidfile_of(r.command) not in ours]
    if not after.ok or others:
        why = (
            f"pwgen relay(s) {', '.join(map(str, others))} of another run use it"
            if after.ok
            else f"the site cannot be checked ({after.error})"
        )
        report.notes.append(f"{label}: ssh master pid {pid} kept: {why}")
        report.kept_masters.append(pid)
        return _cancel_forwards(master, label, items)
    done = master.control("exit")
    ok = poll(lambda: master.pid() is None, 5, interval=0.1) is not None
    detail = "" if ok else " ".join(done.stderr.split()) or "still running"
    return [Action("", label, f"stopped ssh master pid {pid}", ok, detail)]


def _cancel_forwards(
    master: ControlMaster, label: str, items: Sequence[tuple[RunInfo, RunSite]]
) -> list[Action]:
    actions = []
    for run, site in items:
        if site.port is None:
            continue
        spec = f"127.0.0.1:{site.port}:127.0.0.1:{site.port}"
        done = master.control("cancel", "-R", spec)
        if done.returncode == 0:
            actions.append(Action(run.run_id, label, f"cancelled forward -R {spec}"))
    return actions
