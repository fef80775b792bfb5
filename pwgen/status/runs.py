"""Runs of the project: manifests, Parsl's run dirs and each run's state."""

import contextlib
import json
import os
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pwgen.status.layout import FACTS_DIR, RUNS_DIR
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

    state: `ok` (exit 0), `failed` (another exit code), `interrupted` (130),
    `running`, `crashed` (no `finished` and the controller is gone), or
    `crashed, torn down` once `pwgen teardown` cleaned up after it.
    """

    run_id: str
    path: str
    state: str
    workflow: str | None
    labels: list[str]
    started: float | None
    finished: float | None
    exit_code: int | str | None
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
        if end is None and self.state == "running":
            end = time.time()
        return None if end is None else max(0.0, end - self.started)

    @property
    def alive(self) -> bool:
        return self.state in ("running", "starting")

    @property
    def unfinished(self) -> bool:
        """Neither finished nor torn down: crashed runs that still need `pwgen teardown`."""
        return self.finished is None and self.torn_down is None and not self.alive


def read_manifest(run_dir: Path) -> tuple[dict[str, Any] | None, str | None]:
    """(manifest, error): (None, None) when the run has no manifest (yet)."""
    path = run_dir / "manifest.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None, None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        return None, f"{path}: unreadable manifest: {err}"
    if not isinstance(data, dict):
        return None, f"{path}: manifest is not a JSON object"
    return data, None


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    return float(value) if isinstance(value, int | float) else None


def _started_from_id(run_id: str) -> float | None:
    """pwgen's run ids start with the local start time: YYYYmmdd-HHMMSS-xxxxxx."""
    try:
        return time.mktime(time.strptime(run_id[:15], "%Y%m%d-%H%M%S"))
    except ValueError:
        return None


def _runinfo_dirs(run_dir: Path) -> list[Path]:
    runinfo = run_dir / "runinfo"
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


def _site_entries(manifest: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    sites = manifest.get("sites") if manifest else None
    if not isinstance(sites, list):
        return []
    entries = []
    for site in sites:
        if isinstance(site, dict) and isinstance(site.get("label"), str):
            entries.append(site)
        elif isinstance(site, str):
            entries.append({"label": site})
    return entries


def _facts_of(
    label: str, manifest: Mapping[str, Any] | None, facts_dir: Path
) -> dict[str, Any] | None:
    """The facts the run used (its manifest), else the project's current ones."""
    recorded = manifest.get("facts") if manifest else None
    if isinstance(recorded, dict) and isinstance(recorded.get(label), dict):
        found: dict[str, Any] = recorded[label]
        return found
    try:
        data = json.loads((facts_dir / f"{label}.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def describe_run(
    run_dir: Path,
    facts_dir: Path,
    processes: Sequence[LocalProcess] = (),
    now: float | None = None,
    details: bool | None = None,
) -> RunInfo:
    """Everything known about one run dir; `processes` are the run's processes here.

    `details`: also read what the run may have left on its sites (Parsl run ids, ports,
    job names, remote dirs); None: only for runs that are running or crashed.
    """
    run_id = run_dir.name
    manifest, error = read_manifest(run_dir)
    data: Mapping[str, Any] = manifest or {}
    started = _number(data.get("started")) or _started_from_id(run_id)
    finished = _number(data.get("finished"))
    torn_down = _number(data.get("torn_down"))
    exit_code = data.get("exit_code")
    pid = data.get("pid") if isinstance(data.get("pid"), int) else None
    entries = _site_entries(manifest)
    if manifest is not None and entries:
        labels = [entry["label"] for entry in entries]
        schedulers = {entry["label"]: str(entry.get("scheduler", "")) for entry in entries}
    else:
        labels = _labels_without_manifest(run_dir)
        schedulers = {}
    controllers = [proc.pid for proc in processes if proc.kind == "controller"]
    state = _run_state(
        run_dir, finished, exit_code, torn_down, pid, started, controllers, manifest, now
    )
    if details is None:
        details = state in ("running", "starting", "crashed")
    uuids = parsl_run_ids(run_dir) if details else []
    scripts = submit_scripts(run_dir) if details else {}
    remote: dict[str, RunSite] = {}
    for label in labels if details else []:
        if schedulers.get(label) == "local":
            continue
        facts = _facts_of(label, manifest, facts_dir)
        if facts is None and label not in scripts:
            continue  # a local site (no facts, no ssh)
        scheduler = schedulers.get(label) or str((facts or {}).get("scheduler") or "slurm")
        site = RunSite(label=label, scheduler=scheduler, port=_port_of(run_dir, label))
        workdir = (facts or {}).get("workdir")
        if isinstance(workdir, str) and workdir.startswith("/"):
            site.site_dirs += [f"{workdir.rstrip('/')}/{uuid}/{label}" for uuid in uuids]
        for script in scripts.get(label, []):
            site.job_names.append(script.name)
            with contextlib.suppress(OSError):
                match = _LOGDIR_ARG.search(script.read_text(errors="replace"))
                if match and match.group(1) not in site.site_dirs:
                    site.site_dirs.append(match.group(1))
        remote[label] = site
    workflow = data.get("workflow")
    return RunInfo(
        run_id=run_id,
        path=str(run_dir),
        state=state,
        workflow=workflow if isinstance(workflow, str) else None,
        labels=labels,
        started=started,
        finished=finished,
        exit_code=exit_code if isinstance(exit_code, int | str) else None,
        pid=pid,
        torn_down=torn_down,
        parsl_run_ids=uuids,
        remote=remote,
        controller_pids=controllers,
        error=error,
    )


def _run_state(
    run_dir: Path,
    finished: float | None,
    exit_code: Any,
    torn_down: float | None,
    pid: int | None,
    started: float | None,
    controllers: Sequence[int],
    manifest: Mapping[str, Any] | None,
    now: float | None,
) -> str:
    if finished is not None:
        if exit_code == 0:
            return "ok"
        return "interrupted" if exit_code == 130 else "failed"
    if torn_down is not None:
        return "crashed, torn down"
    if pid is not None:
        return "running" if pid_alive(pid, started) else "crashed"
    if controllers:
        return "running"
    if manifest is None and not (run_dir / "runinfo").exists():
        # Before the DataFlowKernel opens parsl.log (preflight), nothing holds its files.
        with contextlib.suppress(OSError):
            age = (now if now is not None else time.time()) - run_dir.stat().st_mtime
            if age < STARTING_GRACE:
                return "starting"
    return "crashed"


def list_runs(state_dir: Path, processes: Sequence[LocalProcess] | None = None) -> list[RunInfo]:
    """Every run of the project, newest first (`processes`: from `scan_processes`)."""
    runs_dir = state_dir / RUNS_DIR
    try:
        run_dirs = [path for path in runs_dir.iterdir() if path.is_dir()]
    except OSError:
        return []
    if processes is None:
        processes = scan_processes(runs_dir)
    by_run: dict[str, list[LocalProcess]] = {}
    for proc in processes:
        by_run.setdefault(proc.run_id, []).append(proc)
    facts_dir = state_dir / FACTS_DIR
    runs = [describe_run(path, facts_dir, by_run.get(path.name, [])) for path in run_dirs]
    return sorted(runs, key=lambda run: (run.started or 0.0, run.run_id), reverse=True)
