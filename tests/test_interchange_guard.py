"""The interchange's guard (pwgen.interchange_guard): the guarded script is the process
HTEX launched, it ends with its controller, and Parsl's interchange runs lean in it."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from helpers import REPO

from pwgen.interchange_guard import guard_launch_cmd
from pwgen.layout import StateLayout
from pwgen.poll import poll
from pwgen.status.processes import process_kind

# A controller: launches the guarded `sleeper` (cleanup: touch MARK), prints its pid,
# then either stops it as HTEX does (terminate), waits to be killed, or exits at once
# (before the guard even looked at it).
CONTROLLER = """
import os, subprocess, sys, time
sys.path.insert(0, {repo!r})
from pwgen.interchange_guard import guard_launch_cmd
cmd = guard_launch_cmd([{sleeper!r}], None)
cmd = [*cmd[:3], "2", "touch", {mark!r}, *cmd[4:]]
proc = subprocess.Popen(cmd, stdin=subprocess.PIPE)
print(proc.pid, flush=True)
if sys.argv[1] == "exit":
    time.sleep(0.5); proc.terminate(); proc.wait(); sys.exit(0)
if sys.argv[1] == "gone":
    os._exit(0)
time.sleep(1000)
"""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def test_the_guard_ends_an_orphaned_interchange_and_cleans_up(tmp_path: Path) -> None:
    mark, sleeper, started = tmp_path / "cleaned", tmp_path / "sleeper.py", tmp_path / "started"
    sleeper.write_text(
        f"import pathlib, time\npathlib.Path({str(started)!r}).touch()\ntime.sleep(1000)\n"
    )
    launcher = CONTROLLER.format(repo=str(REPO), sleeper=str(sleeper), mark=str(mark))
    for how in ("exit", "kill", "gone"):
        mark.unlink(missing_ok=True)
        started.unlink(missing_ok=True)
        dfk = subprocess.Popen(
            [sys.executable, "-c", launcher, how], stdout=subprocess.PIPE, text=True
        )
        assert dfk.stdout is not None
        interchange = int(dfk.stdout.readline())
        if how == "kill":
            assert poll(started.exists, 10)  # the script runs: its guard watches
            dfk.send_signal(signal.SIGKILL)
        dfk.wait()
        assert poll(lambda pid=interchange: not _alive(pid), 5) is not None
        if how == "exit":
            assert not mark.exists(), "a normal shutdown ran the cleanup"
        else:
            assert poll(mark.exists, 10), f"{how}: the cleanup never ran"


def test_guard_launch_cmd_names_the_run_teardown(tmp_path: Path) -> None:
    run = StateLayout(tmp_path / ".pwgen").run("20261205-000000-abcdef")
    command = guard_launch_cmd(["interchange.py"], run)
    assert command[2:] == [
        str(os.getpid()),
        "5",
        *(sys.executable, "-m", "pwgen.teardown", str(run.path.parent.parent), run.run_id),
        "--",
        "interchange.py",
    ]
    assert guard_launch_cmd(["interchange.py"], None)[3:] == ["0", "--", "interchange.py"]
    assert process_kind(" ".join(command)) == "interchange"
    assert process_kind(" ".join(guard_launch_cmd(["other.py"], run))) == "controller"


# Stands in for Parsl's interchange script: reports how it was run.
REPORTER = """
import json, sys
try:
    import sqlalchemy
except ImportError:
    sqlalchemy = None
print(json.dumps({
    "argv": sys.argv, "name": __name__, "path0": sys.path[0],
    "sqlalchemy": sqlalchemy is not None,
    "interchange": "parsl.executors.high_throughput.interchange" in sys.modules,
    "dfk": "parsl.dataflow.dflow" in sys.modules,
}))
"""


def test_the_guarded_interchange_runs_lean(tmp_path: Path) -> None:
    """Run by the guard, a script named interchange.py runs as `python SCRIPT ARGS`
    would (argv, __main__, its own dir first on sys.path) with Parsl's interchange module
    loaded but not the DataFlowKernel nor SQLAlchemy (monitoring's, 16 MB per site)."""
    script = tmp_path / "bin" / "interchange.py"
    script.parent.mkdir()
    script.write_text(REPORTER)
    done = subprocess.run(
        guard_launch_cmd([str(script), "--x"], None), capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {
        "argv": [str(script), "--x"],
        "name": "__main__",
        "path0": str(script.parent),
        "sqlalchemy": False,
        "interchange": True,
        "dfk": False,
    }


def test_a_parsl_whose_interchange_needs_the_package_inits_imports_it_whole() -> None:
    """When the lean import fails, nothing of it stays behind: Parsl imports as usual."""
    probe = (
        "import sys, pwgen_worker\n"
        "print(pwgen_worker.import_lean('parsl.no_such_module'), 'parsl' in sys.modules)\n"
        "import parsl.executors.high_throughput.interchange, parsl.dataflow.dflow\n"
        "print(type(sys.modules['parsl'].DataFlowKernel).__name__)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, cwd=REPO
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "False", "type"]


def test_the_guard_refuses_a_malformed_command_in_one_line() -> None:
    guard = guard_launch_cmd(["x"], None)[:2]
    for args in (["1", "two", "--", "x"], ["1", "1", "a"], ["1", "0", "x", "--"], ["0"], []):
        done = subprocess.run([*guard, *args], capture_output=True, text=True, timeout=30)
        assert done.returncode == 2 and done.stderr.count("\n") == 1, (args, done.stderr)
        assert "usage: PID N CLEANUP... -- SCRIPT ARGS..." in done.stderr
