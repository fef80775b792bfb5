"""What a run does about checkpoints: record its own, and reuse a crashed run's.

`plan_resume` runs before anything else of `pwgen run`: with `--resume RUN_ID` it checks
the run (same workflow, not running), tears it down if it crashed (its blocks, relays,
certificates and interchange; under its teardown lock, so after a teardown its
interchange's guard started) and reads its checkpoint. Without `--resume` it only
offers one: a line on stderr when the last run of the same workflow crashed.
`install_memoizer` then gives the run's Parsl config pwgen's memoizer.
"""

import shlex
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pwgen.errors import PwgenError
from pwgen.layout import RunLayout, StateLayout
from pwgen.manifest import ManifestError, RunManifest, RunState, load_manifest
from pwgen.resume.checkpoint import HEADER, CheckpointWriter, read_checkpoint


class ResumeError(PwgenError):
    """`--resume RUN_ID` names no run, a running one, or one of another workflow."""


@dataclass
class ResumePlan:
    """This run's checkpointing: on or off, and the results of the run it resumes."""

    checkpoint: bool = True
    rerun_apps: Sequence[str] = ()
    resumed_from: str | None = None
    earlier: dict[str, bytes] = field(default_factory=dict)


def plan_resume(
    state_dir: Path,
    workflow: Path,
    resume: str | None,
    checkpoint: bool = True,
    rerun_apps: Sequence[str] = (),
) -> ResumePlan:
    """The run's plan; with `resume`, the dead run is torn down and its checkpoint read."""
    plan = ResumePlan(checkpoint, tuple(rerun_apps))
    if resume is None:
        if plan.checkpoint:
            offer_resume(state_dir, workflow)
        return plan
    if not plan.checkpoint:
        raise ResumeError("--resume reuses a checkpoint: it cannot go with --no-checkpoint")
    run = _resumable_run(state_dir, workflow, resume)
    read = read_checkpoint(run.checkpoint)
    if read.problem:
        print(f"pwgen: warning: {read.problem}", file=sys.stderr)
    plan.resumed_from, plan.earlier = resume, read.results
    print(
        f"pwgen: resuming run {resume}: {len(read.results)} task result(s) reused",
        file=sys.stderr,
    )
    return plan


def _resumable_run(state_dir: Path, workflow: Path, run_id: str) -> RunLayout:
    """The run to resume: checked, and torn down if it crashed."""
    from pwgen.status import describe_run
    from pwgen.teardown import teardown
    from pwgen.teardown.lock import run_teardown_lock

    state = StateLayout(state_dir)
    run = state.run(run_id)
    if not run_id or "/" in run_id or run_id.startswith(".") or not run.path.is_dir():
        raise ResumeError(f"--resume {run_id}: no such run in {state.runs_dir}")
    manifest = _manifest_of(run)
    if not _same_workflow(manifest, workflow):
        raise ResumeError(f"--resume {run_id}: that run ran {manifest.workflow}, not {workflow}")
    with run_teardown_lock(run.path):  # after the teardown its guard may have started
        info = describe_run(run.path, state, details=False)
        if info.alive:
            raise ResumeError(f"--resume {run_id}: that run is still running (pid {info.pid})")
        if info.state == RunState.CRASHED:
            report = teardown(state_dir, run_id, locked=True)
            failed = [f"{a.where}: {a.what}: {a.detail}" for a in report.actions if not a.ok]
            if failed:
                print(
                    f"pwgen: warning: teardown of {run_id} incomplete: {failed[0]}",
                    file=sys.stderr,
                )
    return run


def _manifest_of(run: RunLayout) -> RunManifest:
    try:
        manifest = load_manifest(run.path)
    except ManifestError as err:
        raise ResumeError(f"--resume {run.run_id}: {err}") from None
    if manifest is None:
        raise ResumeError(f"--resume {run.run_id}: the run has no manifest (it never started)")
    return manifest


def _same_workflow(manifest: RunManifest, workflow: Path) -> bool:
    return manifest.workflow is not None and Path(manifest.workflow).resolve() == (
        workflow.resolve()
    )


def offer_resume(state_dir: Path, workflow: Path) -> None:
    """One line on stderr when the last run of `workflow` crashed with results checkpointed."""
    from pwgen.status import describe_run

    state = StateLayout(state_dir)
    try:
        run_dirs = sorted(state.runs_dir.iterdir(), reverse=True)  # ids start with the time
    except OSError:
        return
    for path in run_dirs:
        try:
            manifest = load_manifest(path)
        except ManifestError:
            continue
        if manifest is None or not _same_workflow(manifest, workflow):
            continue
        info = describe_run(path, state, details=False)
        if info.state not in (RunState.CRASHED, RunState.TORN_DOWN):
            return
        checkpoint = RunLayout(path).checkpoint
        if checkpoint.is_file() and checkpoint.stat().st_size > len(HEADER):
            args = f" -- {shlex.join(manifest.args)}" if manifest.args else ""
            print(
                f"pwgen: the last run of {workflow} ({path.name}) crashed; its finished tasks "
                f"are checkpointed: `pwgen run {workflow} --resume {path.name}{args}` reuses them",
                file=sys.stderr,
            )
        return


def install_memoizer(config: Any, run: RunLayout, plan: ResumePlan) -> Any:
    """Give `config` pwgen's memoizer writing `run`'s checkpoint; None when it has none
    (checkpointing off, or the config brings a memoizer of its own)."""
    if not plan.checkpoint:
        return None
    if getattr(config, "memoizer", None) is not None:
        print(
            "pwgen: warning: the config has a memoizer of its own: no checkpoint for --resume",
            file=sys.stderr,
        )
        return None
    from pwgen.resume.memoizer import ResumeMemoizer

    memoizer = ResumeMemoizer(CheckpointWriter(run.checkpoint), plan.earlier, plan.rerun_apps)
    config.memoizer = memoizer
    return memoizer
