"""The interchange's guard: the interchange stops when its DataFlowKernel's process dies.

HTEX starts its interchange as a child of the DataFlowKernel's process. A controller
killed with -9 leaves it behind: it keeps dispatching its queue, and the sites' workers
keep computing results nobody will read. pwgen launches the interchange through this
program (a file run by path, standard library only, as Parsl's own launch command is):

    python interchange_guard.py N CLEANUP... -- INTERCHANGE_SCRIPT ARGS...

It starts a new session (out of reach of the terminal's Ctrl-C, see pwgen.executors)
and a watcher thread, then runs the interchange script in this same process (same pid,
same stdin: HTEX talks to and stops it as if it had launched the script itself). Twice
a second the watcher checks that the DataFlowKernel's process (the one that launched
us) still runs. Once it is gone, the watcher starts the N words CLEANUP in a session of
their own (pwgen: the run's teardown, which cancels its blocks and stops its relays,
and writes what it did into the run's `teardown.log`) and ends the process at once, so
the interchange dispatches nothing more.

Only the death of the controller's process triggers it: a tunnel being repaired does
not, since the DataFlowKernel's process lives on. The watcher is a thread rather than
a process of its own: that is one Python (11 MB) less per site.
"""

import importlib
import importlib.util
import os
import runpy
import shutil
import subprocess
import sys
import threading
import time
import types
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


# Parsl's package __init__s re-export the DataFlowKernel, every executor and the
# monitoring hub (SQLAlchemy with it): none of which the interchange uses, and 16 MB and
# 0.2 s of imports per site. The interchange's own modules are imported without them.
_SKIPPED_INITS = ("parsl", "parsl.executors", "parsl.monitoring")
_INTERCHANGE = "parsl.executors.high_throughput.interchange"


def import_lean_interchange() -> bool:
    """Import Parsl's interchange module without the re-exports of Parsl's package
    __init__s (and without SQLAlchemy). False, with nothing of Parsl left imported, when
    this Parsl's interchange needs them: it then imports as Parsl imports it."""
    sys.modules["sqlalchemy"] = None  # type: ignore[assignment]  # blocks its import
    spec = importlib.util.find_spec("parsl")
    if spec is None or not spec.submodule_search_locations:
        return False
    root = next(iter(spec.submodule_search_locations))
    before = set(sys.modules)
    for name in _SKIPPED_INITS:
        package = types.ModuleType(name)
        package.__path__ = [os.path.join(root, *name.split(".")[1:])]
        sys.modules[name] = package
    try:
        importlib.import_module(_INTERCHANGE)
    except Exception:
        for name in set(sys.modules) - before:
            del sys.modules[name]
        return False
    return True


def run_script(command: Sequence[str]) -> None:
    """Run the Python script `command[0]` (found on PATH like a command) with its
    arguments in this process, as `python SCRIPT ARGS...` would; Parsl's interchange lean."""
    script = shutil.which(command[0]) or command[0]
    if Path(script).name == "interchange.py":
        import_lean_interchange()
    sys.argv = [script, *command[1:]]
    sys.path[0] = os.path.dirname(os.path.abspath(script))  # not pwgen's package dir
    runpy.run_path(script, run_name="__main__")


def main(argv: Sequence[str]) -> int:
    count = int(argv[1]) if len(argv) > 1 and argv[1].isdigit() else -1
    if count < 0 or len(argv) <= 3 + count or argv[2 + count] != "--":
        print("interchange_guard: usage: N CLEANUP... -- SCRIPT ARGS...", file=sys.stderr)
        return 2
    cleanup = list(argv[2 : 2 + count])
    dfk_pid = os.getppid()
    dfk_started = _start_time(dfk_pid)
    os.setsid()
    watcher = threading.Thread(
        target=_watch, args=(dfk_pid, dfk_started, cleanup), name="guard", daemon=True
    )
    watcher.start()
    run_script(argv[3 + count :])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
