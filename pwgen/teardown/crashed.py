"""Tearing down crashed runs: choosing them and running the steps in order."""

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from pwgen.status import (
    FACTS_DIR,
    RUNS_DIR,
    SSH_CONFIG,
    LocalProcess,
    RunInfo,
    RunSite,
    describe_run,
    list_runs,
    scan_processes,
)
from pwgen.teardown.local import stop_local
from pwgen.teardown.manifest import mark_torn_down
from pwgen.teardown.model import Action, TeardownError, TeardownReport
from pwgen.teardown.site import _guarded_site


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
