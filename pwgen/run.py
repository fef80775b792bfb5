"""`pwgen run`: load the generated config, run the user's workflow, tear everything down.

The workflow runs in this process, as `python workflow.py` would run it (same
`__main__`, `sys.argv` and `sys.path[0]`), with a DataFlowKernel already loaded
from the generated config. Whatever happens in the workflow (an exception,
`sys.exit`, Ctrl-C, SIGTERM), the DFK is cleaned up before pwgen exits, which
stops every interchange and cancels every block.

On top of the plain config, a run gets capacity-aware placement (pwgen.placement: a
task allowed on several sites goes where there is room) and pwgen's failover
(pwgen.failover): tasks move
off failing sites, a site over its queue-wait budget is abandoned, tasks lost in a
broken tunnel are retried, and a site unreachable at the start is left out (unless
every site is required). What failover did goes into the manifest.
"""

import json
import logging
import platform
import signal
import sys
from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from types import FrameType
from typing import Any, Literal

from pwgen.executors.blocks import cancel_active_blocks
from pwgen.executors.site import start_together
from pwgen.failover.defaults import AVOID_AFTER, COOL_DOWN, QUEUE_WAIT
from pwgen.failover.dispatch import attach
from pwgen.failover.policy import Failover
from pwgen.failover.watch import SiteWatch
from pwgen.interchange_guard import guard_interchanges
from pwgen.layout import DEFAULT_STATE_DIR, RunLayout
from pwgen.manifest import (
    RunManifest,
    facts_snapshot,
    finish_manifest,
    new_run_dir,
    start_manifest,
    write_manifest,
)
from pwgen.placement import Placement
from pwgen.preflight import (
    Preflight,
    PreflightError,
    start_preflight,
    stop_preflight_masters,
    unreachable_reasons,
)
from pwgen.progress import Mode, RunProgress, Sample, json_report, summary_line
from pwgen.resume import ResumePlan, install_memoizer, plan_resume, prepare_monitoring_db
from pwgen.run_config import load_run_config
from pwgen.sites import Site
from pwgen.userfiles import check_workflow
from pwgen_script import EXIT_BAD_INPUT, EXIT_INTERRUPTED, EXIT_WORKFLOW_FAILED, run_script


@dataclass(frozen=True)
class RunOptions:
    """How a run treats failing sites (the `pwgen run` options of the same names)."""

    failover: bool = True
    retries: int | None = None  # None: the config's own (a generated one has 0)
    queue_wait: float | None = QUEUE_WAIT
    require_all_sites: bool = False
    avoid_after: int = AVOID_AFTER
    cool_down: float = COOL_DOWN
    monitor: bool = False
    config_file: Path | None = None  # the user's own config (`--config`), else generated
    progress: Mode = "quiet"  # the CLI picks live (a terminal) or lines
    json_report: bool = False
    placement: Literal["capacity", "random"] = "capacity"  # pwgen.placement, or Parsl's
    checkpoint: bool = True  # record task results as they end (pwgen.resume)
    resume: str | None = None  # reuse the checkpointed results of this run
    rerun_apps: tuple[str, ...] = ()  # apps whose tasks are never reused


def run_workflow(
    workflow: Path,
    args: Sequence[str],
    sites: Sequence[Site],
    sites_file: Path,
    state_dir: Path = DEFAULT_STATE_DIR,
    options: RunOptions = RunOptions(),
    known_hosts: Sequence[Path] = (),
    preflight: "Future[Preflight] | None" = None,
) -> int:
    """Run `workflow` on `sites`; returns the exit code the CLI should exit with.

    `known_hosts`: files whose host keys the user trusts (pwgen.ssh.trust).
    `preflight`: the sites' preflight, started by the caller once it checked `workflow`
    (pwgen.preflight.start_preflight, before importing this module: it imports Parsl);
    None: started here.
    """
    state_dir = state_dir.resolve()  # the workflow may change the working directory
    if preflight is None:
        check_workflow(workflow)
        preflight = start_preflight(sites, state_dir, known_hosts, options.require_all_sites)
    try:
        run, manifest, resume = _new_run(workflow, args, sites, state_dir, options)
    except BaseException:
        stop_preflight_masters(preflight, sites)
        raise
    try:
        config = _prepare(
            sites, sites_file, state_dir, run, manifest, preflight, options.config_file
        )
    except BaseException:
        finish_manifest(run.path, manifest, EXIT_BAD_INPUT)
        raise
    failover = Failover(
        enabled=options.failover, threshold=options.avoid_after, cool_down=options.cool_down
    )
    memoizer = _configure(config, failover, options, run, workflow, resume)
    exit_code, last = EXIT_WORKFLOW_FAILED, None
    try:
        with _sigterm_as_exit(), _log_to(run.log):
            dfk, guards = _load(config, failover, options, manifest)
            progress = RunProgress(dfk, failover, run.run_id, options.progress)
            progress.start()
            try:
                exit_code = _run_and_wait(dfk, workflow, args, manifest)
            finally:
                last = progress.stop()
                _unload(dfk, guards, manifest)
    except KeyboardInterrupt:
        print("pwgen: interrupted; sites torn down", file=sys.stderr)
        exit_code = EXIT_INTERRUPTED
    finally:
        manifest.failover = failover.report()
        manifest.reused_results = memoizer.reused if memoizer else 0
        _print_failover_summary(manifest.failover)
        finish_manifest(run.path, manifest, exit_code)
        _report_end(last, run.run_id, exit_code, manifest.failover, options)
    return exit_code


def _report_end(
    last: Sample | None, run_id: str, exit_code: int, failover: dict[str, Any], options: RunOptions
) -> None:
    """The summary line (stderr), and with --json the report (stdout's last line)."""
    if last is not None and options.progress != "quiet":
        print(summary_line(last, run_id, exit_code), file=sys.stderr)
    if options.json_report:
        report = json_report(last, run_id, exit_code, failover) if last else {"run_id": run_id}
        print(json.dumps({**report, "exit_code": exit_code}), flush=True)


def _configure(
    config: Any,
    failover: Failover,
    options: RunOptions,
    run: RunLayout,
    workflow: Path,
    resume: ResumePlan,
) -> Any:
    """What a run adds to the generated config: retries, failover, monitoring, guarded
    interchanges (they stop if this process is killed) and pwgen's memoizer (returned)."""
    if options.retries is not None:
        config.retries = options.retries
    config.retry_handler = failover
    if options.monitor:
        config.monitoring = _monitoring_hub(run, workflow)
    guard_interchanges(config, run)
    return install_memoizer(config, run, resume)


@dataclass
class _Guards:
    """What watches a loaded run: failover's site watch, and placement (unless random)."""

    watch: SiteWatch
    placement: Placement | None

    def stop(self, manifest: RunManifest) -> None:
        self.watch.stop()
        if self.placement is not None:
            self.placement.stop()
            manifest.placement = self.placement.report()


def _load(
    config: Any, failover: Failover, options: RunOptions, manifest: RunManifest
) -> tuple[Any, _Guards]:
    """Load the DataFlowKernel (executors, tunnels, blocks); start failover's watch and
    placement."""
    import parsl

    with manifest.timed("load"):
        start_together(config.executors)  # sites prepare their tunnels at once
        dfk = parsl.load(config)
        attach(failover, dfk)
        watch = SiteWatch(failover, dfk, queue_wait=options.queue_wait)
        watch.start()
        placement = Placement(dfk, failover) if options.placement == "capacity" else None
        if placement is not None:
            placement.attach()
    return dfk, _Guards(watch, placement)


def _run_and_wait(dfk: Any, workflow: Path, args: Sequence[str], manifest: RunManifest) -> int:
    """The workflow's exit code, once its tasks are done (when it ended well)."""
    with manifest.timed("workflow"):
        exit_code = run_script(workflow, args, "pwgen")
        if exit_code == 0:
            dfk.wait_for_current_tasks()
    return exit_code


def _unload(dfk: Any, guards: _Guards, manifest: RunManifest) -> None:
    """Stop the guards and the DataFlowKernel: every block cancelled, every tunnel down."""
    import parsl

    with manifest.timed("cleanup"):
        guards.stop(manifest)
        _cancel_blocks_of_bad_executors(dfk)
        dfk.cleanup()
        parsl.clear()
        if guards.placement is not None:  # the monitoring database is closed now
            endpoint = getattr(dfk.monitoring, "logging_endpoint", None) if dfk.monitoring else None
            guards.placement.correct_monitoring(endpoint, dfk.run_id)


def _new_run(
    workflow: Path, args: Sequence[str], sites: Sequence[Site], state_dir: Path, options: RunOptions
) -> tuple[RunLayout, RunManifest, ResumePlan]:
    """The run's directory and its first manifest (finished: null, written now: a run
    killed -9 still has one), and what it resumes."""
    import parsl

    resume = plan_resume(
        state_dir, workflow, options.resume, options.checkpoint, options.rerun_apps
    )
    run = new_run_dir(state_dir)
    manifest = start_manifest(
        run.run_id,
        workflow,
        list(args),
        sites=[site.model_dump(mode="json") for site in sites],
        parsl_version=parsl.__version__,
        python_version=platform.python_version(),
        options=asdict(options),
        resumed_from=resume.resumed_from,
    )
    write_manifest(run.path, manifest)
    return run, manifest, resume


def _prepare(
    sites: Sequence[Site],
    sites_file: Path,
    state_dir: Path,
    run: RunLayout,
    manifest: RunManifest,
    preflight: "Future[Preflight]",
    config_file: Path | None,
) -> Any:
    """The preflight's outcome and the generated config; returns the loaded Parsl Config.

    Sites preflight found unreachable are left out of the generated config and stand
    in as `UnavailableExecutor`s, so apps naming them still resolve.
    """
    done = preflight.result()  # raises what the preflight raised
    try:
        if done.ssh is not None:
            manifest.timings["preflight"] = done.seconds
            manifest.unavailable_sites = {
                row.label: row.unreachable for row in done.versions if row.unreachable
            }
            manifest.site_versions = {
                row.label: [row.parsl, row.python] for row in done.versions if not row.unreachable
            }
            _report_unavailable(done.versions, sites)
        live = [site for site in sites if site.label not in manifest.unavailable_sites]
        remote_live = [site.label for site in live if not site.is_local]
        manifest.facts = facts_snapshot(state_dir, remote_live)
        return load_run_config(
            live, sites_file, state_dir, run, manifest.unavailable_sites, config_file
        )
    except BaseException:
        stop_preflight_masters(preflight, sites)
        raise


def _monitoring_hub(run: RunLayout, workflow: Path) -> Any:
    """Parsl monitoring into `<run dir>/monitoring.db`, for every site at once.

    HTEX's radio sends workers' messages back over their existing connection, so no
    port is added. Interval 0: each try's start and end are recorded, without the
    per-task resource sampling process (which costs more than a short task).
    """
    from parsl.monitoring import MonitoringHub

    prepare_monitoring_db(run.monitoring_db)  # WAL: whole after a kill -9
    return MonitoringHub(
        logging_endpoint=f"sqlite:///{run.monitoring_db.resolve()}",
        workflow_name=workflow.stem,
        resource_monitoring_interval=0,
    )


def _cancel_blocks_of_bad_executors(dfk: Any) -> None:
    for label, executor in dfk.executors.items():
        if getattr(executor, "bad_state_is_set", False):
            cancel_active_blocks(label, executor)


def _report_unavailable(versions: Sequence[Any], sites: Sequence[Site]) -> None:
    """Warn about sites left out; refuse when none is left."""
    down = [row for row in versions if row.unreachable]
    if not down:
        return
    if len(down) == len(sites):
        raise PreflightError(f"no site is reachable: {unreachable_reasons(down)}")
    names = ", ".join(row.label for row in down)
    print(
        f"pwgen: warning: site(s) {names} unreachable ({unreachable_reasons(down)}); "
        "running on the other sites (--require-all-sites refuses instead)",
        file=sys.stderr,
    )


def _print_failover_summary(report: dict[str, Any]) -> None:
    """One line on stderr when failover moved tasks or gave up on a site."""
    parts = []
    if report["moves"]:
        routes = ", ".join(f"{route}: {n}" for route, n in sorted(report["routes"].items()))
        parts.append(f"{report['moves']} task(s) moved ({routes})")
    if report["presumed_lost"]:
        parts.append(f"{report['presumed_lost']} presumed lost in a broken tunnel and retried")
    parts += [f"site {site} abandoned: {why}" for site, why in report["abandoned"].items()]
    if parts:
        print("pwgen: failover: " + "; ".join(parts), file=sys.stderr)


@contextmanager
def _log_to(path: Path) -> Iterator[None]:
    """pwgen's own log records (moves, repairs, abandoned sites) into the run directory."""
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("pwgen")
    root.addHandler(handler)
    if root.level == logging.NOTSET or root.level > logging.INFO:
        root.setLevel(logging.INFO)
    try:
        yield
    finally:
        root.removeHandler(handler)
        handler.close()


@contextmanager
def _sigterm_as_exit() -> Iterator[None]:
    """Turn SIGTERM into KeyboardInterrupt so the same teardown runs as for Ctrl-C."""

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
