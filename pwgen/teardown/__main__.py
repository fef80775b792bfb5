"""`python -m pwgen.teardown STATE_DIR RUN_ID`: the teardown an orphaned interchange's
guard (pwgen.interchange_guard) starts when the run's controller died.

A run has one interchange (and guard) per site, so it may start once per site: only the
first does anything, the others find the run torn down.
"""

import sys
from pathlib import Path

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
    run_dir = StateLayout(state_dir).run(run_id).path
    with run_teardown_lock(run_dir):
        try:
            manifest = load_manifest(run_dir)
        except ManifestError:
            manifest = None
        if manifest is not None and (manifest.torn_down or manifest.finished):
            print(f"run {run_id}: already ended or torn down")
            return 0
        try:
            report = teardown(state_dir, run_id, locked=True)
        except PwgenError as err:
            print(f"teardown of {run_id}: {err}")
            return 1
    print_teardown(report)
    return 0 if report.clean else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
