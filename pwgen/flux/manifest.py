"""The `manifest.json` a site-side run leaves in its local run directory."""

import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from pwgen.fileio import atomic_write
from pwgen.flux.plan import SiteRunPlan

if TYPE_CHECKING:
    from pwgen.run import RunRecord


def write_manifest(
    run_dir: Path, record: "RunRecord", exit_code: int, plan: SiteRunPlan | None
) -> None:
    data = asdict(record)
    data["finished"] = time.time()
    data["exit_code"] = exit_code
    if plan is not None:
        data["site_side"] = {
            "site": plan.label,
            "remote_dir": plan.remote_dir,
            "command": plan.run_command(),
            "files": [f.name for f in plan.files],
        }
    atomic_write(run_dir / "manifest.json", json.dumps(data, indent=2) + "\n")
