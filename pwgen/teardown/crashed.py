"""Tearing down crashed runs: choosing them and running the steps in order."""

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from pwgen.layout import StateLayout
from pwgen.manifest import RunState
from pwgen.status import (
    LocalProcess,
    RunInfo,
    RunSite,
    describe_run,
    list_runs,
    scan_processes,
)
from pwgen.teardown.local import stop_local
from pwgen.teardown.lock import run_teardown_lock
from pwgen.teardown.manifest import mark_torn_down
from pwgen.teardown.model import Action, TeardownError, TeardownReport
from pwgen.teardown.site import teardown_site

#: A run's processes here that teardown stops: Parsl's helpers (and, at the end, ssh).
_HELPERS = ("interchange", "parsl")


def teardown(state_dir: Path, run_id: str | None = None, locked: bool = False) -> TeardownReport:
    """Tear down crashed runs of the project in `state_dir` (or only `run_id`, under its
    teardown lock unless the caller holds it: `locked`)."""
    if run_id is not None and not locked:
        with run_teardown_lock(StateLayout(state_dir).run(run_id).path):
            return teardown(state_dir, run_id, locked=True)
    state = StateLayout(state_dir)
    report = TeardownReport()
    processes = scan_processes(state.runs_dir)
    runs = list_runs(state_dir, processes)
    live = [run for run in runs if run.alive]
    if run_id is not None:
        targets = [_chosen_run(state, runs, processes, run_id)]
    else:
        targets = [run for run in runs if run.state == RunState.CRASHED]
    report.notes += [f"run {run.run_id} is {run.state}: left alone" for run in live]
    # 1. Parsl's processes here whose run's controller is gone.
    report.actions += stop_local(_orphaned_helpers(processes, live, run_id))
    # 2 + 3. The sites, in parallel.
    report.actions += _teardown_sites(state.ssh_config, targets, live, report)
    # ssh processes of the runs still here (a master started by a tunnel logs into the run).
    report.actions += stop_local(_leftovers(state, targets, report))
    # 4. Mark the runs whose teardown fully succeeded.
    _mark_torn_down(targets, report)
    return report


def _orphaned_helpers(
    processes: Sequence[LocalProcess], live: Sequence[RunInfo], run_id: str | None
) -> list[LocalProcess]:
    """Parsl's helpers of runs that are not alive (of `run_id` only, when given)."""
    live_ids = {run.run_id for run in live}
    return [
        proc
        for proc in processes
        if proc.kind in _HELPERS
        and proc.run_id not in live_ids
        and (run_id is None or proc.run_id == run_id)
    ]


def _teardown_sites(
    ssh_config: Path, targets: Sequence[RunInfo], live: Sequence[RunInfo], report: TeardownReport
) -> list[Action]:
    """Every site of the target runs, in parallel (one failed action each without ssh)."""
    work: dict[str, list[tuple[RunInfo, RunSite]]] = {}
    for run in targets:
        for label, site in run.remote.items():
            work.setdefault(label, []).append((run, site))
    if not work:
        return []
    if not ssh_config.is_file():
        detail = f"no {ssh_config}: cannot reach the site"
        return [
            Action(",".join(run.run_id for run, _ in items), label, "reach the site", False, detail)
            for label, items in work.items()
        ]
    actions: list[Action] = []
    with ThreadPoolExecutor(max_workers=min(16, len(work))) as pool:
        results = pool.map(
            lambda item: teardown_site(ssh_config, item[0], item[1], live, report),
            work.items(),
        )
        for found in results:
            actions += found
    return actions


def _leftovers(
    state: StateLayout, targets: Sequence[RunInfo], report: TeardownReport
) -> list[LocalProcess]:
    """The target runs' processes still here, but not the ssh masters teardown kept."""
    target_ids = {run.run_id for run in targets}
    return [
        proc
        for proc in scan_processes(state.runs_dir)
        if proc.run_id in target_ids
        and proc.kind in ("ssh", *_HELPERS)
        and proc.pid not in report.kept_masters
    ]


def _mark_torn_down(targets: Sequence[RunInfo], report: TeardownReport) -> None:
    """Mark the unfinished runs none of whose actions (nor their sites') failed."""
    failed = {action.run_id for action in report.actions if not action.ok}
    failed_sites = {action.where for action in report.actions if not action.ok}
    for run in targets:
        if run.finished is not None or run.run_id in failed:
            continue
        if failed_sites & set(run.remote):
            continue
        mark_torn_down(Path(run.path), run)
        report.torn_down.append(run.run_id)


def _chosen_run(
    state: StateLayout, runs: Sequence[RunInfo], processes: Sequence[LocalProcess], run_id: str
) -> RunInfo:
    known = {run.run_id: run for run in runs}
    run = known.get(run_id)
    if run is None:
        latest = ", ".join(list(known)[:3]) or "none"
        raise TeardownError(f"--run {run_id}: no such run in {state.runs_dir} (latest: {latest})")
    if run.alive:
        pid = run.pid or (run.controller_pids[0] if run.controller_pids else None)
        how = f"`kill -TERM {pid}`" if pid else "Ctrl-C"
        raise TeardownError(
            f"run {run_id} is still running: stop it with {how}; it then tears itself down"
        )
    mine = [proc for proc in processes if proc.run_id == run_id]
    return describe_run(Path(run.path), state, mine, details=True)
