"""The interchange's guard: the interchange stops when its DataFlowKernel's process dies.

HTEX starts its interchange as a child of the DataFlowKernel's process. A controller
killed with -9 leaves it behind: it keeps dispatching its queue, and the sites' workers
keep computing results nobody will read. pwgen launches the interchange through this
program (a file run by path, standard library only, as Parsl's own launch command is):

    python interchange_guard.py N CLEANUP... -- INTERCHANGE COMMAND...

It starts a new session (out of reach of the terminal's Ctrl-C, see pwgen.executors),
forks a watcher and then *becomes* the interchange (exec: same pid, same stdin, so
HTEX talks to and stops it as if launched directly). The watcher checks twice a second:

- the interchange is gone (a pipe it holds reached its end): a normal shutdown, the
  watcher exits at once;
- the DataFlowKernel's process is gone (its pid no longer runs the process that
  launched us): it TERMs (then KILLs) the interchange, then runs the N words CLEANUP
  (pwgen: the run's teardown, which cancels its blocks and stops its relays, and
  writes what it did into the run's `teardown.log`), and exits.

Only the death of the controller's process triggers it: a tunnel being repaired does
not, since the DataFlowKernel's process lives on.
"""

import os
import select
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pwgen.layout import RunLayout

#: Seconds between two checks of the DataFlowKernel's process.
CHECK_INTERVAL = 0.5
#: Seconds a TERMed interchange has before it is KILLed.
KILL_AFTER = 2.0


def guard_launch_cmd(interchange: Sequence[str], run: "RunLayout | None") -> list[str]:
    """The launch command that runs `interchange` guarded; when orphaned, the teardown of
    the pwgen run `run` follows (none when None: the interchange only stops)."""
    cleanup: list[str] = []
    if run is not None:
        state_dir = run.path.parent.parent  # <state>/runs/<id>
        cleanup = [sys.executable, "-m", "pwgen.teardown", str(state_dir), run.run_id]
    return [sys.executable, __file__, str(len(cleanup)), *cleanup, "--", *interchange]


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


def _stop(pid: int) -> None:
    """TERM, then KILL after KILL_AFTER seconds: the interchange is gone on return."""
    for sig, wait in ((signal.SIGTERM, KILL_AFTER), (signal.SIGKILL, KILL_AFTER)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if _start_time(pid) is None or os.getppid() != pid:
                return
            time.sleep(0.05)


def _watch(gone: int, dfk_pid: int, dfk_started: str | None, cleanup: Sequence[str]) -> int:
    """The watcher's loop (in the forked child; its parent is the interchange, which
    holds the pipe whose read end is `gone`: readable at end of file once it exited)."""
    interchange = os.getppid()
    while True:
        readable, _, _ = select.select([gone], [], [], CHECK_INTERVAL)
        if readable or os.getppid() != interchange:
            return 0  # the interchange ended: the run shut it down
        if dfk_started is not None and _start_time(dfk_pid) == dfk_started:
            continue
        _stop(interchange)
        if not cleanup:
            return 0
        return subprocess.call(cleanup, stdin=subprocess.DEVNULL)


def _detach_stdio() -> None:
    """The watcher holds none of the interchange's pipes (HTEX's stdin, the terminal)."""
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)


def main(argv: Sequence[str]) -> int:
    count = int(argv[1])
    cleanup = list(argv[2 : 2 + count])
    if argv[2 + count] != "--" or len(argv) <= 3 + count:
        print("interchange_guard: usage: N CLEANUP... -- COMMAND...", file=sys.stderr)
        return 2
    command = list(argv[3 + count :])
    dfk_pid = os.getppid()
    dfk_started = _start_time(dfk_pid)
    os.setsid()
    gone, alive = os.pipe()  # the interchange keeps `alive` open until it exits
    if os.fork() == 0:
        os.close(alive)
        _detach_stdio()
        os._exit(_watch(gone, dfk_pid, dfk_started, cleanup))
    os.close(gone)
    os.set_inheritable(alive, True)
    command = lean_interchange_command(command)
    os.execvp(command[0], command)


# Runs Parsl's interchange script without SQLAlchemy: Parsl's monitoring imports it when
# installed (16 MB per interchange, one per site), yet only the monitoring database,
# which lives in the DataFlowKernel's process, uses it.
_WITHOUT_SQLALCHEMY = (
    "import runpy, sys; sys.modules['sqlalchemy'] = None; del sys.argv[0]; "
    "runpy.run_path(sys.argv[0], run_name='__main__')"
)


def lean_interchange_command(command: list[str]) -> list[str]:
    """Parsl's `interchange.py` run by this Python without SQLAlchemy; others as they are."""
    script = shutil.which(command[0])
    if Path(command[0]).name != "interchange.py" or script is None:
        return command
    return [sys.executable, "-c", _WITHOUT_SQLALCHEMY, script, *command[1:]]


if __name__ == "__main__":
    sys.exit(main(sys.argv))
