"""The interchange's guard: the interchange stops when its DataFlowKernel's process dies.

HTEX starts its interchange as a child of the DataFlowKernel's process. A controller
killed with -9 leaves it behind: it keeps dispatching its queue, and the sites' workers
keep computing results nobody will read. pwgen launches the interchange through this
program (a file run by path, as Parsl's own launch command is; standard library and
pwgen_worker only):

    python interchange_guard.py PID N CLEANUP... -- INTERCHANGE_SCRIPT ARGS...

It starts a new session (out of reach of the terminal's Ctrl-C, see pwgen.executors)
and a watcher thread, then runs the interchange script in this same process, lean
(pwgen_worker.run_script; same pid, same stdin: HTEX talks to and stops it as if it
had launched the script itself). Twice a second the watcher checks that the
DataFlowKernel's process (PID, the one that launched us) still runs. Once it is gone, the
watcher starts the N words CLEANUP in a session of their own (pwgen: the run's
teardown, which cancels its blocks and stops its relays, and writes what it did into
the run's `teardown.log`) and ends the process at once, so the interchange dispatches
nothing more.

Only the death of the controller's process triggers it: a tunnel being repaired does
not, since the DataFlowKernel's process lives on. The watcher is a thread rather than
a process of its own: that is one Python (11 MB) less per site.
"""

import os
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pwgen.layout import RunLayout

#: Seconds between two checks of the DataFlowKernel's process.
CHECK_INTERVAL = 0.5


def guard_launch_cmd(interchange: Sequence[str], run: "RunLayout | None") -> list[str]:
    """The launch command that runs `interchange` guarded; when orphaned, the teardown of
    the pwgen run `run` follows (none when None: the interchange only stops)."""
    cleanup: list[str] = []
    if run is not None:
        state_dir = run.path.parent.parent  # <state>/runs/<id>
        cleanup = [sys.executable, "-m", "pwgen.teardown", str(state_dir), run.run_id]
    launcher = str(os.getpid())  # HTEX launches its interchange from this process
    return [sys.executable, __file__, launcher, str(len(cleanup)), *cleanup, "--", *interchange]


def run_of_parsl_dir(parsl_run_dir: str | None) -> "RunLayout | None":
    """The pwgen run whose Parsl run dir (`<run>/runinfo/NNN`) this is, if any."""
    from pwgen.layout import RunLayout, StateLayout  # not when run as a program

    if not parsl_run_dir:
        return None
    numbered = Path(parsl_run_dir).absolute()
    run = RunLayout(numbered.parent.parent)
    same = StateLayout(run.path.parent.parent).run(run.run_id).runinfo == numbered.parent
    return run if same and run.manifest.is_file() else None


def guard_interchanges(config: Any, run: "RunLayout") -> None:
    """Every executor of `config` that launches Parsl's interchange as Parsl does (a local
    site's HTEX too) launches it guarded, with `run`'s teardown when orphaned."""
    from pwgen.parsl_internals import default_interchange_launch_cmd

    default_launch = default_interchange_launch_cmd()
    for executor in config.executors:
        if list(getattr(executor, "interchange_launch_cmd", None) or ()) == default_launch:
            executor.interchange_launch_cmd = guard_launch_cmd(default_launch, run)


def _start_time(pid: int) -> str | None:
    """The process's start time (clock ticks since boot), None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read().decode(errors="replace")
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2 :].split()
    if len(fields) < 20 or fields[0] == "Z":  # a zombie has already died
        return None
    return fields[19]


def _watch(dfk_pid: int, dfk_started: str | None, cleanup: Sequence[str]) -> None:
    """The watcher thread: once the DataFlowKernel's process is gone (or its pid runs
    another process), start `cleanup` and end this process, the interchange."""
    while dfk_started is not None and _start_time(dfk_pid) == dfk_started:
        time.sleep(CHECK_INTERVAL)
    if cleanup:
        subprocess.Popen(
            cleanup,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
    os._exit(0)


def _parse(argv: Sequence[str]) -> tuple[int, list[str], list[str]] | None:
    """PID, CLEANUP and the script's command from `argv`; None when malformed."""
    words = list(argv[1:])
    if len(words) < 2 or not (words[0].isdigit() and words[1].isdigit()):
        return None
    count = int(words[1])
    if len(words) <= 3 + count or words[2 + count] != "--":
        return None
    return int(words[0]), words[2 : 2 + count], words[3 + count :]


def main(argv: Sequence[str]) -> int:
    parsed = _parse(argv)
    if parsed is None:
        print("interchange_guard: usage: PID N CLEANUP... -- SCRIPT ARGS...", file=sys.stderr)
        return 2
    dfk_pid, cleanup, command = parsed
    # Launched by a process that has died already (we were handed to another parent):
    # no start time to watch for, so the watcher acts at once.
    dfk_started = _start_time(dfk_pid) if os.getppid() == dfk_pid else None
    os.setsid()
    watcher = threading.Thread(
        target=_watch, args=(dfk_pid, dfk_started, cleanup), name="guard", daemon=True
    )
    watcher.start()
    from pwgen_worker import run_script  # once the watcher runs: it imports Parsl's

    run_script(command)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
