"""Marking a run's manifest as crashed and torn down."""

import json
import time
from pathlib import Path
from typing import Any

from pwgen.fileio import atomic_write
from pwgen.status import RunInfo, read_manifest


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
