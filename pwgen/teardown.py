"""`pwgen teardown`: clean up after runs whose controller died (killed -9, machine lost).

A run tears itself down when it ends, even on Ctrl-C or SIGTERM; a `pwgen run`
killed with -9 cannot. It leaves, in its own sessions, the interchange here (its
`parsl: HTEX interchange` process keeps `<run>/runinfo/NNN/<label>/interchange.log`
open), the ssh master with its `-R` forward, and on each site the relay, the
running blocks (and their worker pools) and the copy of the worker certificates.

For every *crashed* run (no `finished` in its manifest, controller gone, not yet
torn down; or only the run given with `--run`):

1. here: TERM (then KILL after a few seconds) this user's interchange and Parsl
   processes that belong to the run (see `pwgen.status`: an open file, argument or
   cwd under the run's dir, or a descendant of such a helper) — and those of any
   other run whose controller is gone. Nothing else is touched: no other project's
   or user's process, no live run's.
2. on each site of the run, in parallel, in one ssh call (plus a check): cancel the
   run's blocks (`scancel`/`qdel` of the jobs whose names are the run's submit
   scripts' names: `parsl.<label>.block-<n>.<submit time>`), wait until they have
   left the queue, kill worker pools still running with the run's `--logdir`;
   stop the run's relay (the pid in `<workdir>/<uuid>/<label>/relay.pid`, checked
   to be a relay with that pid file); remove the certificate copy
   (`<workdir>/<uuid>/<label>/certificates`).
3. the site's ssh master (`ssh -O exit`), unless a live run of this project uses the
   site, or another pwgen relay still runs there (another project's live run shares
   the master, which is one per site and user, and carries its forward): then only
   the crashed run's forward is cancelled (`ssh -O cancel -R`).
4. the run's manifest gets `"torn_down": <time>` and `"crashed": true` (written
   atomically; a run killed before writing one gets a minimal manifest), once every
   step above succeeded. A torn-down run is not looked at again (unless `--run`).

Idempotent: a second teardown finds nothing to do. Nothing is ever started: remote
calls use `ControlMaster=no` (through the master while it lives).
"""

import contextlib
import json
import os
import shlex
import signal
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from pwgen.errors import PwgenError
from pwgen.fileio import atomic_write
from pwgen.status import (
    FACTS_DIR,
    RUNS_DIR,
    SSH_CONFIG,
    LocalProcess,
    RunInfo,
    RunSite,
    SiteProbe,
    describe_run,
    list_runs,
    pid_alive,
    probe_site,
    read_manifest,
    relay_pidfile_of,
    run_on_site,
    scan_processes,
    site_master,
)
from pwgen.tunnels.master import ControlMaster

#: Seconds a TERMed process has before it is KILLed (here and on the sites).
KILL_AFTER = 3.0
#: Seconds the remote step may take (scancel, waiting for the queue, relays).
SITE_TIMEOUT = 60
#: Seconds to wait for cancelled blocks to leave the queue.
QUEUE_WAIT = 20


class TeardownError(PwgenError):
    """`pwgen teardown --run ID` names no run, or a run that is still running."""


@dataclass
class Action:
    """One thing teardown did (or failed to do)."""

    run_id: str  # "" when it concerns no single run (a site's master)
    where: str  # "here" or a site label
    what: str
    ok: bool = True
    detail: str = ""


@dataclass
class TeardownReport:
    actions: list[Action] = field(default_factory=list)
    torn_down: list[str] = field(default_factory=list)  # runs whose manifest was marked
    notes: list[str] = field(default_factory=list)  # what was left alone, and why
    kept_masters: list[int] = field(default_factory=list)  # pids of masters left running

    @property
    def clean(self) -> bool:
        """Nothing failed: every run looked at is torn down."""
        return all(action.ok for action in self.actions)


def teardown(state_dir: Path, run_id: str | None = None) -> TeardownReport:
    """Tear down crashed runs of the project in `state_dir` (or only `run_id`)."""
    report = TeardownReport()
    runs_dir = state_dir / RUNS_DIR
    processes = scan_processes(runs_dir)
    runs = list_runs(state_dir, processes)
    live = [run for run in runs if run.alive]
    live_ids = {run.run_id for run in live}
    if run_id is not None:
        targets = [_chosen_run(state_dir, runs, processes, run_id)]
    else:
        targets = [run for run in runs if run.state == "crashed"]
    for run in live:
        report.notes.append(f"run {run.run_id} is {run.state}: left alone")

    # 1. Parsl's processes here whose run's controller is gone.
    helpers = [
        proc
        for proc in processes
        if proc.kind in ("interchange", "parsl")
        and proc.run_id not in live_ids
        and (run_id is None or proc.run_id == run_id)
    ]
    report.actions += stop_local(helpers)

    # 2 + 3. The sites, in parallel.
    ssh_config = state_dir / SSH_CONFIG
    work: dict[str, list[tuple[RunInfo, RunSite]]] = {}
    for run in targets:
        for label, site in run.remote.items():
            work.setdefault(label, []).append((run, site))
    if work and not ssh_config.is_file():
        for label, items in work.items():
            report.actions.append(
                Action(
                    ",".join(run.run_id for run, _ in items),
                    label,
                    "reach the site",
                    ok=False,
                    detail=f"no {ssh_config}: cannot reach the site",
                )
            )
    elif work:
        with ThreadPoolExecutor(max_workers=min(16, len(work))) as pool:
            results = pool.map(
                lambda item: _guarded_site(ssh_config, item[0], item[1], live, report),
                work.items(),
            )
            for actions in results:
                report.actions += actions

    # ssh processes of the runs still here (a master started by a tunnel logs into the run).
    target_ids = {run.run_id for run in targets}
    leftovers = [
        proc
        for proc in scan_processes(runs_dir)
        if proc.run_id in target_ids
        and proc.kind in ("ssh", "interchange", "parsl")
        and proc.pid not in report.kept_masters
    ]
    report.actions += stop_local(leftovers)

    # 4. Mark the runs whose teardown fully succeeded.
    failed = {action.run_id for action in report.actions if not action.ok}
    failed_sites = {action.where for action in report.actions if not action.ok}
    for run in targets:
        if run.finished is not None or run.run_id in failed:
            continue
        if failed_sites & set(run.remote):
            continue
        mark_torn_down(Path(run.path), run)
        report.torn_down.append(run.run_id)
    return report


def _chosen_run(
    state_dir: Path, runs: Sequence[RunInfo], processes: Sequence[LocalProcess], run_id: str
) -> RunInfo:
    known = {run.run_id: run for run in runs}
    run = known.get(run_id)
    if run is None:
        latest = ", ".join(list(known)[:3]) or "none"
        raise TeardownError(
            f"--run {run_id}: no such run in {state_dir / RUNS_DIR} (latest: {latest})"
        )
    if run.alive:
        pid = run.pid or (run.controller_pids[0] if run.controller_pids else None)
        how = f"`kill -TERM {pid}`" if pid else "Ctrl-C"
        raise TeardownError(
            f"run {run_id} is still running: stop it with {how}; it then tears itself down"
        )
    mine = [proc for proc in processes if proc.run_id == run_id]
    return describe_run(Path(run.path), state_dir / FACTS_DIR, mine, details=True)


# ---------------------------------------------------------------- here


def _same_process(proc: LocalProcess) -> bool:
    """`proc` still runs (not a zombie) and its pid was not reused for another command."""
    if not pid_alive(proc.pid):
        return False
    try:
        with open(f"/proc/{proc.pid}/cmdline", "rb") as handle:
            command = handle.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return False
    return command == proc.command


def stop_local(procs: Sequence[LocalProcess], wait: float = KILL_AFTER) -> list[Action]:
    """TERM the processes, KILL those alive after `wait` s; one Action each."""
    alive = [proc for proc in procs if _same_process(proc)]
    for proc in alive:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + wait
    while any(_same_process(proc) for proc in alive) and time.monotonic() < deadline:
        time.sleep(0.05)
    hard = [proc for proc in alive if _same_process(proc)]
    for proc in hard:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(proc.pid, signal.SIGKILL)
    deadline = time.monotonic() + 2
    while any(_same_process(proc) for proc in hard) and time.monotonic() < deadline:
        time.sleep(0.05)
    actions = []
    for proc in alive:
        survived = _same_process(proc)
        signal_name = "KILL" if proc in hard else "TERM"
        actions.append(
            Action(
                proc.run_id,
                "here",
                f"stopped {proc.kind} pid {proc.pid} ({signal_name})",
                ok=not survived,
                detail=proc.command[:120] if not survived else "still running",
            )
        )
    return actions


# ---------------------------------------------------------------- a site


def _marker_args(site_dirs: Iterable[str]) -> list[str]:
    """Command-line words that make a worker pool one of these site dirs' pools."""
    return [f"--logdir={path}" for path in site_dirs]


def _is_pool_of(command: str, site_dirs: Sequence[str]) -> bool:
    words = set(command.split())
    return any(marker in words for marker in _marker_args(site_dirs))


def action_script(
    scheduler: str,
    job_ids: Sequence[str],
    relays: Sequence[tuple[int, str]],
    cert_dirs: Sequence[str],
    pools: Sequence[tuple[int, str]],
) -> str:
    """Bash for the login node: cancel, wait for the queue, stop relays and pools, rm certs.

    relays: (pid, pid file); pools: (pid, `--logdir=...` word). A pid is only signalled
    while its command line still holds that word (no reused pid is killed).
    """
    q = shlex.quote
    lines = [
        "u=$(id -un)",
        'ours() { [ -n "$1" ] && kill -0 "$1" 2>/dev/null && '
        "tr '\\0' ' ' </proc/\"$1\"/cmdline 2>/dev/null | grep -qF -- \"$2\"; }",
        'stop() { if ours "$1" "$2"; then kill "$1" 2>/dev/null; i=0; '
        'while ours "$1" "$2" && [ "$i" -lt ' + str(int(KILL_AFTER * 20)) + " ]; do "
        'i=$((i + 1)); sleep 0.05; done; if ours "$1" "$2"; then kill -9 "$1" 2>/dev/null; fi; '
        'echo "stopped|$1"; fi; }',
    ]
    if job_ids:
        ids = " ".join(q(job) for job in job_ids)
        if scheduler == "pbspro":
            lines.append(f"qdel {ids} 2>&1 | sed 's/^/cancel_msg|/'")
            listing = 'qselect -u "$u" 2>/dev/null'
        else:
            lines.append(f"scancel {ids} 2>&1 | sed 's/^/cancel_msg|/'")
            listing = (
                "squeue -h -u \"$u\" -o '%i %T' 2>/dev/null "
                "| grep -vE ' (COMPLETING|COMPLETED|CANCELLED|FAILED|TIMEOUT)$' | cut -d' ' -f1"
            )
        pattern = "|".join(job.replace(".", "\\.") for job in job_ids)
        lines.append(
            f"i=0; while [ $i -lt {QUEUE_WAIT * 5} ]; do "
            f"left=$({listing} | grep -xE {q(pattern)}); "
            '[ -z "$left" ] && break; i=$((i + 1)); sleep 0.2; done; '
            'echo "left|$(echo $left)"'
        )
    for pid, pidfile in relays:
        # cmdline words are NUL-separated: `tr` makes each end with a space.
        lines.append(f"stop {pid} {q(f'--pidfile {pidfile} ')}; rm -f -- {q(pidfile)}")
    for pid, marker in pools:
        lines.append(f"stop {pid} {q(marker + ' ')}")
    for path in cert_dirs:
        lines.append(f"rm -rf -- {q(path)} && echo {q('removed|' + path)}")
    lines.append('echo "end|"')
    return "\n".join(lines)


def _guarded_site(
    ssh_config: Path,
    label: str,
    items: Sequence[tuple[RunInfo, RunSite]],
    live: Sequence[RunInfo],
    report: TeardownReport,
) -> list[Action]:
    """`_teardown_site`, with any unexpected error reported as a failed action."""
    try:
        return _teardown_site(ssh_config, label, items, live, report)
    except Exception as err:  # one site's trouble must not hide the others' results
        run_ids = ",".join(run.run_id for run, _ in items)
        return [Action(run_ids, label, "tear down the site", ok=False, detail=repr(err))]


def _teardown_site(
    ssh_config: Path,
    label: str,
    items: Sequence[tuple[RunInfo, RunSite]],
    live: Sequence[RunInfo],
    report: TeardownReport,
) -> list[Action]:
    """Blocks, relays, pools and cert copies of the runs `items` on one site; its master."""
    run_ids = ",".join(run.run_id for run, _ in items)
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
        [f"{path}/certificates" for path in plan.certs],
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
        add(dir_owner[path], "removed cert copy", gone, f"{path}/certificates")
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
    first_time = any(run.state == "crashed" for run, _ in items)
    if not (first_time or found):
        return []
    users = [run.run_id for run in live if label in run.labels]
    if users:
        report.notes.append(f"{label}: ssh master pid {pid} kept: used by running run {users[0]}")
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
    deadline = time.monotonic() + 5
    while (still := master.pid()) is not None and time.monotonic() < deadline:
        time.sleep(0.1)
    ok = still is None
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


# ---------------------------------------------------------------- manifests


def mark_torn_down(run_dir: Path, run: RunInfo) -> None:
    """Record in the run's manifest that it crashed and was torn down (atomic write)."""
    manifest, _ = read_manifest(run_dir)
    data: dict[str, Any] = dict(manifest or {})
    if manifest is None:  # killed before it wrote one
        data.update(
            run_id=run.run_id,
            workflow=run.workflow,
            sites=[{"label": label} for label in run.labels],
            started=run.started,
            finished=None,
            exit_code=None,
        )
    data["crashed"] = True
    data["torn_down"] = time.time()
    atomic_write(run_dir / "manifest.json", json.dumps(data, indent=2) + "\n")


# ---------------------------------------------------------------- rendering


def teardown_json(report: TeardownReport) -> dict[str, Any]:
    data = asdict(report)
    data["clean"] = report.clean
    return data


def teardown_table(report: TeardownReport) -> Table:
    table = Table(title="teardown", title_justify="left")
    for column in ("run", "where", "action", "result"):
        table.add_column(column, no_wrap=column == "run")
    for action in report.actions:
        result = "ok" if action.ok else "[red]FAILED[/]"
        detail = f" {escape(action.detail)}" if action.detail else ""
        table.add_row(
            escape(action.run_id or "-"), escape(action.where), escape(action.what), result + detail
        )
    return table


def print_teardown(report: TeardownReport, console: Console | None = None) -> None:
    """What teardown did (a table), what it left alone, and the runs marked torn down."""
    out = console or Console(highlight=False)
    if report.actions:
        out.print(teardown_table(report))
    else:
        out.print("nothing to tear down", markup=False)
    for note in report.notes:
        out.print(f"note: {note}", markup=False)
    if report.torn_down:
        out.print(f"torn down: {', '.join(report.torn_down)}", markup=False)
