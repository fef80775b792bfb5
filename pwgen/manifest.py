"""A run's record, `<state>/runs/<id>/manifest.json`: one typed model for writer and readers.

`pwgen run` (pwgen.run) creates the run dir and
writes the manifest twice: at the start with `finished: null` (so a run killed -9
still has one) and at the end. `pwgen teardown` marks a crashed run `crashed` and
`torn_down`; `pwgen status` reads it back. Every write is atomic.

Reading is lenient where old manifests differ (a missing key takes its default,
unknown keys are kept on a rewrite); a manifest that is not JSON or has a wrong
type is one `ManifestError` naming the file.
"""

import json
import os
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from pwgen import __version__
from pwgen.errors import OutputError, PwgenError
from pwgen.facts import read_facts
from pwgen.fileio import atomic_write
from pwgen.layout import RunLayout, StateLayout

#: The exit code of a run stopped by Ctrl-C or SIGTERM (pwgen run's own).
_INTERRUPTED = 130


class ManifestError(PwgenError):
    """A run's manifest cannot be read or does not have the manifest's shape."""


class RunState(StrEnum):
    """A run's state as `pwgen status` shows it (and `--json` writes it)."""

    OK = "ok"  # finished, exit code 0
    FAILED = "failed"  # finished, another exit code
    INTERRUPTED = "interrupted"  # finished by Ctrl-C or SIGTERM (130)
    RUNNING = "running"  # its controller lives
    STARTING = "starting"  # a fresh run dir, nothing written yet (preflight)
    CRASHED = "crashed"  # not finished, its controller is gone
    TORN_DOWN = "crashed, torn down"  # crashed, then cleaned up by `pwgen teardown`


class RunManifest(BaseModel):
    """What a run did. Unknown keys are kept, so a rewrite loses nothing."""

    model_config = ConfigDict(extra="allow")

    run_id: str
    workflow: str | None = None
    args: list[str] = Field(default_factory=list)
    # Each site as the run was given it (`Site.model_dump`); at least its label.
    sites: list[dict[str, Any]] = Field(default_factory=list)
    parsl_version: str | None = None
    python_version: str | None = None
    pwgen_version: str | None = None
    started: float | None = None
    finished: float | None = None
    exit_code: int | None = None
    # Seconds per step: preflight, load, ship, workflow, cleanup.
    timings: dict[str, float] = Field(default_factory=dict)
    # site -> [parsl, python] as preflight found them.
    site_versions: dict[str, list[str]] = Field(default_factory=dict)
    # label -> the site's facts as the run used them (`SiteFacts` as JSON).
    facts: dict[str, dict[str, Any]] = Field(default_factory=dict)
    # The controller's pid: tells a running run from a crashed one.
    pid: int | None = None
    options: dict[str, Any] = Field(default_factory=dict)
    # site -> why it was left out (unreachable at the start).
    unavailable_sites: dict[str, str] = Field(default_factory=dict)
    failover: dict[str, Any] = Field(default_factory=dict)
    placement: dict[str, Any] = Field(default_factory=dict)  # pwgen.placement's report
    # `pwgen run --resume`: the run this one resumed, and how many results it reused.
    resumed_from: str | None = None
    reused_results: int = 0
    # Set by `pwgen teardown` once it cleaned up after the crashed run.
    crashed: bool = False
    torn_down: float | None = None

    @field_validator("sites", mode="before")
    @classmethod
    def _labels_as_sites(cls, value: Any) -> Any:
        """A bare label stands for a site with only that label."""
        if isinstance(value, list):
            return [{"label": site} if isinstance(site, str) else site for site in value]
        return value

    @field_validator("sites")
    @classmethod
    def _sites_have_labels(cls, value: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for index, site in enumerate(value):
            if not isinstance(site.get("label"), str):
                raise ValueError(f"site {index} has no label")
        return value

    @property
    def labels(self) -> list[str]:
        return [str(site["label"]) for site in self.sites]

    @contextmanager
    def timed(self, step: str) -> Iterator[None]:
        """Record how long the block took in `timings[step]` (not when it raises)."""
        clock = time.monotonic()
        yield
        self.timings[step] = time.monotonic() - clock

    def ended_state(self) -> RunState | None:
        """The state the manifest alone decides (finished or torn down), else None."""
        if self.finished is not None:
            if self.exit_code == 0:
                return RunState.OK
            return RunState.INTERRUPTED if self.exit_code == _INTERRUPTED else RunState.FAILED
        if self.torn_down is not None:
            return RunState.TORN_DOWN
        return None


def start_manifest(run_id: str, workflow: Path, args: list[str], **fields: Any) -> RunManifest:
    """A new run's manifest: this process's pid and version, started now."""
    return RunManifest(
        run_id=run_id,
        workflow=str(workflow),
        args=args,
        pwgen_version=__version__,
        started=time.time(),
        pid=os.getpid(),
        **fields,
    )


def new_run_dir(state_dir: Path) -> RunLayout:
    """A fresh `<state>/runs/<id>/` (0700), its id starting with the local time."""
    run_id = time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(3)
    run = StateLayout(state_dir).run(run_id)
    try:
        run.path.mkdir(parents=True, mode=0o700)
    except OSError as err:
        raise OutputError(f"{state_dir}: cannot create the run directory: {err.strerror}") from None
    return run


def write_manifest(run_dir: Path, manifest: RunManifest) -> None:
    text = json.dumps(manifest.model_dump(mode="json"), indent=2) + "\n"
    atomic_write(RunLayout(run_dir).manifest, text)


def finish_manifest(run_dir: Path, manifest: RunManifest, exit_code: int) -> None:
    """Record the end of the run (now, with `exit_code`) and write the manifest."""
    manifest.finished = time.time()
    manifest.exit_code = exit_code
    write_manifest(run_dir, manifest)


def load_manifest(run_dir: Path) -> RunManifest | None:
    """The run's manifest; None when it has none (yet); ManifestError when it is broken."""
    path = RunLayout(run_dir).manifest
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ManifestError(f"{path}: unreadable manifest: {err}") from None
    if not isinstance(data, dict):
        raise ManifestError(f"{path}: manifest is not a JSON object")
    try:
        return RunManifest.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "manifest"
        raise ManifestError(f"{path}: invalid manifest: {where}: {first['msg']}") from None


def facts_snapshot(state_dir: Path, labels: list[str]) -> dict[str, dict[str, Any]]:
    """These sites' facts as the run uses them (read and checked by pwgen.facts), as JSON."""
    facts_dir = StateLayout(state_dir).facts_dir
    return {label: read_facts(facts_dir, label).model_dump(mode="json") for label in labels}
