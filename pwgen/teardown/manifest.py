"""Marking a run's manifest as crashed and torn down."""

import time
from pathlib import Path

from pwgen.manifest import ManifestError, RunManifest, load_manifest, write_manifest
from pwgen.status import RunInfo


def mark_torn_down(run_dir: Path, run: RunInfo) -> None:
    """Record in the run's manifest that it crashed and was torn down (atomic write)."""
    try:
        manifest = load_manifest(run_dir)
    except ManifestError:
        manifest = None  # unreadable: replaced by what status knew of the run
    if manifest is None:  # killed before it wrote one
        manifest = RunManifest(
            run_id=run.run_id,
            workflow=run.workflow,
            sites=[{"label": label} for label in run.labels],
            started=run.started,
        )
    manifest.crashed = True
    manifest.torn_down = time.time()
    write_manifest(run_dir, manifest)
