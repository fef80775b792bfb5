"""Benchmark: a controller killed -9 at 50 % and resumed, against an uninterrupted run.

Brings up a lab of its own (2 sites, 2 compute nodes each, prefix `pwbr`,
10.213.0.0/16) in a scratch project, provisions it with the CLI, then runs one
workflow (TASKS tasks that may run on either site, each appending a marker line on its
site) with `pwgen run`, side by side:

1. uninterrupted;
2. `pwgen run` killed with SIGKILL when half the markers are written, then
   `pwgen run --resume RUN_ID` to the end.

Reported: task executions (marker lines) of each ÷ TASKS — the work a crash costs
(target ≤ 1.1) —, the executions between the kill and the sites being idle (the dead
run's queue must not be worked off), the seconds from the kill to the sites idle
(no job, pool or relay: target ≤ 10 s), and wall times. Every result is checked. The
lab is always taken down.

    sudo .venv/bin/python bench/resume.py [--tasks 600] [--pause 0.1]
"""

import argparse
import json
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from common import PWGEN, project_ssh, provision
from rich.console import Console
from rich.table import Table

from pwgen.lab import lifecycle
from pwgen.lab.plan import make_options
from pwgen.lab.sitefiles import site_dir
from pwgen.lab.state import LabState, load_state
from pwgen.poll import poll
from pwgen.ssh.command import Master

PREFIX, SUBNET = "pwbr", "10.213.0.0/16"
MARKS = "bench-resume-marks.txt"

WORKFLOW = Path(__file__).parent.parent / "examples" / "resume.py"

out = Console()


@dataclass
class Outcome:
    executions: int
    wall: float
    after_kill: int | None = None  # executions from the kill until the sites were idle
    to_idle: float | None = None  # seconds from the kill until the sites were idle


def marks_file(lab: LabState, label: str) -> Path:
    """The marker file in the site user's home (the site's shared /home, seen from here)."""
    site = lab.site(label)
    assert site is not None
    return site_dir(Path(lab.state_dir), label) / "home" / site.user / MARKS


def count_marks(lab: LabState) -> int:
    total = 0
    for label in ("lab1", "lab2"):
        path = marks_file(lab, label)
        total += len(path.read_text().splitlines()) if path.exists() else 0
    return total


def start(
    project: Path, args: argparse.Namespace, result: Path, *options: str
) -> "subprocess.Popen[str]":
    argv = [str(PWGEN), "run", str(WORKFLOW), "--sites", str(args.sites), "-q", *options]
    return subprocess.Popen(
        [*argv, "--", str(args.tasks), str(args.pause), str(result), MARKS],
        cwd=project,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc: "subprocess.Popen[str]", result: Path, tasks: int) -> None:
    _, stderr = proc.communicate(timeout=900)
    if proc.returncode != 0:
        sys.exit(f"bench: pwgen run failed: {stderr}")
    if json.loads(result.read_text()) != [[i, i * i] for i in range(tasks)]:
        sys.exit(f"bench: wrong or missing results in {result}")


#: The site user's jobs, worker pools and relays (ps: the lab's nodes share one pid space).
BUSY = (
    "squeue -h -t PD,CF,R,S; ps -u \"$(id -u)\" -o stat=,args= | grep -v '^Z' "
    "| grep -e process_worker_pool -e pwgen-relay | grep -v grep || true"
)


def sites_idle(project: Path) -> bool:
    """No job, worker pool or relay of the project's site users on either site."""
    for label in ("lab1", "lab2"):
        command = project_ssh(project).command(label).remote(BUSY, Master.JOIN)
        done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
        if done.returncode != 0 or done.stdout.strip():  # the teardown may stop the master
            return False
    return True


def uninterrupted(project: Path, args: argparse.Namespace, lab: LabState) -> Outcome:
    clear_marks(lab)
    started = time.monotonic()
    finish(start(project, args, project / "calm.json"), project / "calm.json", args.tasks)
    return Outcome(count_marks(lab), time.monotonic() - started)


def crashed_and_resumed(project: Path, args: argparse.Namespace, lab: LabState) -> Outcome:
    clear_marks(lab)
    started = time.monotonic()
    proc = start(project, args, project / "crashed.json")
    if poll(lambda: count_marks(lab) >= args.tasks // 2, 600) is None:
        sys.exit("bench: the run never got half way")
    proc.send_signal(signal.SIGKILL)
    killed, at_kill = time.monotonic(), count_marks(lab)
    proc.wait()
    idle = poll(lambda: sites_idle(project), 60, interval=0.5)
    to_idle = time.monotonic() - killed if idle is not None else None
    after_kill = count_marks(lab) - at_kill
    runs = project / ".pwgen" / "runs"
    run_id = max(runs.iterdir(), key=lambda path: path.stat().st_mtime).name
    resumed = start(project, args, project / "resumed.json", "--resume", run_id)
    finish(resumed, project / "resumed.json", args.tasks)
    return Outcome(count_marks(lab), time.monotonic() - started, after_kill, to_idle)


def clear_marks(lab: LabState) -> None:
    for label in ("lab1", "lab2"):
        marks_file(lab, label).unlink(missing_ok=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=600)
    parser.add_argument("--pause", type=float, default=0.1, help="seconds per task")
    args = parser.parse_args()
    state_dir = Path(tempfile.gettempdir()) / "pwgen-bench-resume-lab"
    project = Path(tempfile.mkdtemp(prefix="pwgen-bench-resume-"))
    args.sites = state_dir / "sites.yaml"
    lifecycle.down(state_dir)
    try:
        lifecycle.up(make_options(PREFIX, SUBNET, 2, 2, state_dir))
        lab = load_state(state_dir)
        assert lab is not None
        provision(project, args.sites)
        calm = uninterrupted(project, args, lab)
        crash = crashed_and_resumed(project, args, lab)
    finally:
        for label in ("lab1", "lab2"):
            project_ssh(project).stop_master(label)
        lifecycle.down(state_dir)
    report(args, calm, crash)


def report(args: argparse.Namespace, calm: Outcome, crash: Outcome) -> None:
    table = Table(title=f"kill -9 at 50 %: {args.tasks} tasks of {args.pause} s, 2 sites")
    for column in ("run", "executions", "÷ tasks", "÷ uninterrupted", "wall"):
        table.add_column(column, justify="right")
    table.add_row(
        "uninterrupted",
        str(calm.executions),
        f"{calm.executions / args.tasks:.3f}",
        "1.000",
        f"{calm.wall:.1f} s",
    )
    ratio = crash.executions / calm.executions
    table.add_row(
        "crash + resume",
        str(crash.executions),
        f"{crash.executions / args.tasks:.3f}",
        f"{ratio:.3f}",
        f"{crash.wall:.1f} s",
    )
    out.print(table)
    idle = "never (60 s)" if crash.to_idle is None else f"{crash.to_idle:.1f} s"
    out.print(f"kill -> sites idle: {idle}; executions after the kill: {crash.after_kill}")
    verdict = "met" if ratio <= 1.1 else "MISSED"
    out.print(f"target ÷ uninterrupted ≤ 1.1: {verdict} ({ratio:.3f})")


if __name__ == "__main__":
    main()
