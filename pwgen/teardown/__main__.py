"""`python -m pwgen.teardown STATE_DIR RUN_ID`: the teardown an orphaned interchange's
guard (pwgen.interchange_guard) starts when the run's controller died; what it did
goes into the run's `teardown.log`.

A run has one interchange (and guard) per site, so it may start once per site: only the
first does anything, the others find the run torn down.
"""

import sys
from pathlib import Path
from typing import TextIO

from rich.console import Console

from pwgen.errors import PwgenError
from pwgen.layout import StateLayout
from pwgen.manifest import ManifestError, load_manifest
from pwgen.teardown.crashed import teardown
from pwgen.teardown.lock import run_teardown_lock
from pwgen.teardown.render import print_teardown


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print("usage: python -m pwgen.teardown STATE_DIR RUN_ID", file=sys.stderr)
        return 2
    state_dir, run_id = Path(argv[1]), argv[2]
    run = StateLayout(state_dir).run(run_id)
    try:
        log = run.orphan_log.open("a", encoding="utf-8")
    except OSError:
        return 1  # no run dir (deleted): nothing of it to find
    with log, run_teardown_lock(run.path):
        return _teardown_once(state_dir, run_id, log)


def _teardown_once(state_dir: Path, run_id: str, log: TextIO) -> int:
    """Tear the run down unless that is done (or it ended); the report into `log`."""
    try:
        manifest = load_manifest(StateLayout(state_dir).run(run_id).path)
    except ManifestError:
        manifest = None
    if manifest is not None and (manifest.torn_down or manifest.finished):
        return 0
    print(f"run {run_id}: its controller (pid {manifest and manifest.pid}) died", file=log)
    try:
        report = teardown(state_dir, run_id, locked=True)
    except PwgenError as err:
        print(f"teardown of {run_id}: {err}", file=log)
        return 1
    print_teardown(report, Console(file=log, width=120, highlight=False))
    return 0 if report.clean else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
