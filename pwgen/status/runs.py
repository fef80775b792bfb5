"""Runs of the project: manifests, Parsl's run dirs and each run's state."""

import contextlib
import json
import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pwgen.layout import RunLayout, StateLayout
from pwgen.manifest import ManifestError, RunManifest, RunState, load_manifest
from pwgen.status.processes import LocalProcess, pid_alive, scan_processes

#: A run dir younger than this, with no manifest and no process, is still starting.
STARTING_GRACE = 30.0
#: Largest part of a `parsl.log` read to find the run's uuid.
_PARSL_LOG_LIMIT = 4_000_000

_RUN_UUID = re.compile(r"Run id is: ([0-9a-f-]{36})")
_BOUND_PORT = re.compile(r"Bound to port (\d+) for incoming worker connections")
_LOGDIR_ARG = re.compile(r"--logdir=(\S+)")
_JOB_NAME = re.compile(r"^parsl\.(?P<label>[A-Za-z_][A-Za-z0-9_]*)\.block-\d+\.[0-9.]+$")


@dataclass
class RunSite:
    """What a run left (or may have left) on one remote site."""

    label: str
    scheduler: str
    # <workdir>/<parsl run uuid>/<label>: relay pid file and log, certificates, worker logs.
    site_dirs: list[str] = field(default_factory=list)
    port: int | None = None
    job_names: list[str] = field(default_factory=list)


@dataclass
class RunInfo:
    """One run of the project, from its manifest and Parsl's run dir.

    state: see `RunState`; `error`: why its manifest could not be read.
    """

    run_id: str
    path: str
    state: RunState
    workflow: str | None
    labels: list[str]
    started: float | None
    finished: float | None
    exit_code: int | None
    pid: int | None
    torn_down: float | None
    parsl_run_ids: list[str]
    remote: dict[str, RunSite]
    controller_pids: list[int] = field(default_factory=list)
    error: str | None = None

    @property
    def duration(self) -> float | None:
        if self.started is None:
            return None
        end = self.finished if self.finished is not None else None
        if end is None and self.state == RunState.RUNNING:
            end = time.time()
        return None if end is None else max(0.0, end - self.started)

    @property
    def alive(self) -> bool:
        return self.state in (RunState.RUNNING, RunState.STARTING)

    @property
    def unfinished(self) -> bool:
        """Neither finished nor torn down: crashed runs that still need `pwgen teardown`."""
        return self.finished is None and self.torn_down is None and not self.alive


def _started_from_id(run_id: str) -> float | None:
    """pwgen's run ids start with the local start time: YYYYmmdd-HHMMSS-xxxxxx."""
    try:
        return time.mktime(time.strptime(run_id[:15], "%Y%m%d-%H%M%S"))
    except ValueError:
        return None


def _runinfo_dirs(run_dir: Path) -> list[Path]:
    runinfo = RunLayout(run_dir).runinfo
    try:
        return sorted(path for path in runinfo.iterdir() if path.is_dir())
    except OSError:
        return []


def parsl_run_ids(run_dir: Path) -> list[str]:
    """The DataFlowKernel run ids (uuids) of the run, from its `parsl.log` files."""
    found: list[str] = []
    for numbered in _runinfo_dirs(run_dir):
        try:
            with open(numbered / "parsl.log", encoding="utf-8", errors="replace") as log:
                read = 0
                for line in log:
                    read += len(line)
                    match = _RUN_UUID.search(line)
                    if match:
                        found.append(match.group(1))
                        break
                    if read > _PARSL_LOG_LIMIT:
                        break
        except OSError:
            continue
    return found


def _port_of(run_dir: Path, label: str) -> int | None:
    for numbered in reversed(_runinfo_dirs(run_dir)):
        try:
            text = (numbered / label / "interchange.log").read_text(errors="replace")
        except OSError:
            continue
        match = _BOUND_PORT.search(text)
        if match:
            return int(match.group(1))
    return None


def submit_scripts(run_dir: Path) -> dict[str, list[Path]]:
    """The run's local copies of its block submit scripts, per site label."""
    scripts: dict[str, list[Path]] = {}
    for numbered in _runinfo_dirs(run_dir):
        try:
            names = sorted(os.listdir(numbered / "submit_scripts"))
        except OSError:
            continue
        for name in names:
            match = _JOB_NAME.match(name)
            if match:
                scripts.setdefault(match.group("label"), []).append(
                    numbered / "submit_scripts" / name
                )
    return scripts


def _labels_without_manifest(run_dir: Path) -> list[str]:
    """Sites of a run that wrote no manifest: its executors' log dirs in runinfo/."""
    labels: set[str] = set()
    for numbered in _runinfo_dirs(run_dir):
        with contextlib.suppress(OSError):
            labels.update(
                path.name
                for path in numbered.iterdir()
                if path.is_dir() and path.name != "submit_scripts"
            )
    labels.update(submit_scripts(run_dir))
    return sorted(label for label in labels if label.isidentifier())


def _read_manifest(run_dir: Path) -> tuple[RunManifest | None, str | None]:
    """(manifest, error): a broken manifest is shown as the run's error, not raised."""
    try:
        return load_manifest(run_dir), None
    except ManifestError as err:
        return None, str(err)


def _facts_of(
    label: str, manifest: RunManifest | None, state: StateLayout
) -> dict[str, Any] | None:
    """The facts the run used (its manifest), else the project's current ones."""
    if manifest is not None and label in manifest.facts:
        return manifest.facts[label]
    try:
        data = json.loads(state.facts_file(label).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def describe_run(
    run_dir: Path,
    state: StateLayout,
    processes: Sequence[LocalProcess] = (),
    now: float | None = None,
    details: bool | None = None,
) -> RunInfo:
    """Everything known about one run dir; `processes` are the run's processes here.

    `details`: also read what the run may have left on its sites (Parsl run ids, ports,
    job names, remote dirs); None: only for runs that are running or crashed.
    """
    manifest, error = _read_manifest(run_dir)
    started = (manifest.started if manifest else None) or _started_from_id(run_dir.name)
    controllers = [proc.pid for proc in processes if proc.kind == "controller"]
    run_state = _run_state(run_dir, manifest, started, controllers, now)
    if details is None:
        details = run_state in (RunState.RUNNING, RunState.STARTING, RunState.CRASHED)
    labels = manifest.labels if manifest and manifest.sites else _labels_without_manifest(run_dir)
    uuids = parsl_run_ids(run_dir) if details else []
    return RunInfo(
        run_id=run_dir.name,
        path=str(run_dir),
        state=run_state,
        workflow=manifest.workflow if manifest else None,
        labels=labels,
        started=started,
        finished=manifest.finished if manifest else None,
        exit_code=manifest.exit_code if manifest else None,
        pid=manifest.pid if manifest else None,
        torn_down=manifest.torn_down if manifest else None,
        parsl_run_ids=uuids,
        remote=_remote_sites(run_dir, labels, manifest, state, uuids) if details else {},
        controller_pids=controllers,
        error=error,
    )


def _remote_sites(
    run_dir: Path,
    labels: Sequence[str],
    manifest: RunManifest | None,
    state: StateLayout,
    uuids: Sequence[str],
) -> dict[str, RunSite]:
    """What the run may have left on each of its remote sites."""
    schedulers = {
        str(entry["label"]): str(entry.get("scheduler", ""))
        for entry in (manifest.sites if manifest else [])
    }
    scripts = submit_scripts(run_dir)
    remote: dict[str, RunSite] = {}
    for label in labels:
        if schedulers.get(label) == "local":
            continue
        facts = _facts_of(label, manifest, state)
        if facts is None and label not in scripts:
            continue  # a local site (no facts, no ssh)
        scheduler = schedulers.get(label) or str((facts or {}).get("scheduler") or "slurm")
        site = RunSite(label=label, scheduler=scheduler, port=_port_of(run_dir, label))
        workdir = (facts or {}).get("workdir")
        if isinstance(workdir, str) and workdir.startswith("/"):
            site.site_dirs += [f"{workdir.rstrip('/')}/{uuid}/{label}" for uuid in uuids]
        _add_submit_scripts(site, scripts.get(label, []))
        remote[label] = site
    return remote


def _add_submit_scripts(site: RunSite, scripts: Sequence[Path]) -> None:
    """Job names of the site's blocks, and the worker log dirs their scripts name."""
    for script in scripts:
        site.job_names.append(script.name)
        with contextlib.suppress(OSError):
            match = _LOGDIR_ARG.search(script.read_text(errors="replace"))
            if match and match.group(1) not in site.site_dirs:
                site.site_dirs.append(match.group(1))


def _run_state(
    run_dir: Path,
    manifest: RunManifest | None,
    started: float | None,
    controllers: Sequence[int],
    now: float | None,
) -> RunState:
    ended = manifest.ended_state() if manifest else None
    if ended is not None:
        return ended
    if manifest is not None and manifest.pid is not None:
        return RunState.RUNNING if pid_alive(manifest.pid, started) else RunState.CRASHED
    if controllers:
        return RunState.RUNNING
    if manifest is None and not RunLayout(run_dir).runinfo.exists():
        # Before the DataFlowKernel opens parsl.log (preflight), nothing holds its files.
        with contextlib.suppress(OSError):
            age = (now if now is not None else time.time()) - run_dir.stat().st_mtime
            if age < STARTING_GRACE:
                return RunState.STARTING
    return RunState.CRASHED


def list_runs(state_dir: Path, processes: Sequence[LocalProcess] | None = None) -> list[RunInfo]:
    """Every run of the project, newest first (`processes`: from `scan_processes`)."""
    state = StateLayout(state_dir)
    runs_dir = state.runs_dir
    try:
        run_dirs = [path for path in runs_dir.iterdir() if path.is_dir()]
    except OSError:
        return []
    if processes is None:
        processes = scan_processes(runs_dir)
    by_run: dict[str, list[LocalProcess]] = {}
    for proc in processes:
        by_run.setdefault(proc.run_id, []).append(proc)
    runs = [describe_run(path, state, by_run.get(path.name, [])) for path in run_dirs]
    return sorted(runs, key=lambda run: (run.started or 0.0, run.run_id), reverse=True)
