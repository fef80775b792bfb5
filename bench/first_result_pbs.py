"""Benchmark: `pwgen run` -> first result on a PBS site vs a Slurm site (issue 17), side
by side in one run.

Brings up a lab of its own (lab1 OpenPBS, lab2 Slurm, 1 compute node each, prefix
`pwfp`, 10.228.0.0/16; OpenPBS from $PWGEN_PBS_TARBALL or ../shared/pbs/, built once
per machine) in a scratch project, provisions both, then runs `pwgen run` of a
workflow that sends one task to one site and prints when its result is back, RUNS
times per site, the sites alternating (every other round in reverse), each run once
the site's previous block has left the scheduler (a qdel'ed PBS job holds its node
until its obit, up to the queue's kill_delay: a user's run right after another would
wait for it). Reported per site: the median of process start -> first result, of the
run manifest's step times, and of process start -> block submitted (Parsl's log) and
-> manager registered (the interchange's log). Each site twice: its pools started lean
(pwgen's config: pwgen.executors.pool_launch) and by Parsl's own launch command (the
same config without `launch_cmd`, through `pwgen run --config`). The lab is always
taken down.

    sudo .venv/bin/python bench/first_result_pbs.py [--runs 5]
"""

import argparse
import os
import re
import statistics
import subprocess
import tempfile
from pathlib import Path

from common import lab_up, project_ssh, pwgen
from first_result import WORKFLOW, one_run
from rich.console import Console
from rich.table import Table

from pwgen.poll import poll

PREFIX, SUBNET = "pwfp", "10.228.0.0/16"
SITES = {"lab1": "PBS (OpenPBS 23.06)", "lab2": "Slurm"}
LAUNCHES = ("lean pool", "Parsl's launch")
Column = tuple[str, str]  # (site, launch)
COLUMNS: list[Column] = [(label, launch) for label in SITES for launch in LAUNCHES]
#: The user's jobs not finished yet, per site: empty output when none.
JOBS = {"lab1": 'qselect -u "$(id -un)"', "lab2": 'squeue -h -u "$(id -un)"'}
TARBALL = Path(__file__).resolve().parents[2] / "shared" / "pbs" / "openpbs-v23.06.06.tar.gz"

out = Console()


def wait_until_idle(project: Path, label: str) -> None:
    """Until the site lists no job of the user (at most 60 s)."""
    argv = project_ssh(project).command(label).remote(JOBS[label])

    def idle() -> bool:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
        return done.returncode == 0 and done.stdout.strip() == ""

    if poll(idle, 60, interval=0.2) is None:
        raise SystemExit(f"bench: {label} still lists jobs after 60 s")


def parsl_launch_config(project: Path, sites: Path) -> Path:
    """pwgen's config for the sites with Parsl's own pool launch command."""
    config = project / "parsl_launch.py"
    pwgen("config", "--sites", str(sites), "-o", str(config), cwd=project)
    lean = re.compile(r"^    launch_cmd=lean_worker_pool\(\n.*?\n    \),.*?\n", re.M | re.S)
    text, count = lean.subn("", config.read_text())
    if count != len(SITES):
        raise SystemExit(f"bench: {count} lean launch commands in the config, not {len(SITES)}")
    config.write_text(text)
    return config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="`pwgen run`s per site")
    args = parser.parse_args()
    tarball = os.environ.get("PWGEN_PBS_TARBALL", str(TARBALL))
    project = Path(tempfile.mkdtemp(prefix="pwgen-bench-first-pbs-"))
    lab_dir = project / "lab"
    sites = lab_dir / "sites.yaml"
    (project / "first.py").write_text(WORKFLOW)
    firsts: dict[Column, list[float]] = {column: [] for column in COLUMNS}
    steps: dict[Column, dict[str, list[float]]] = {column: {} for column in COLUMNS}
    try:
        lab_up(
            project, lab_dir, PREFIX, SUBNET, 2,
            "--schedulers", "pbspro,slurm", "--pbs-tarball", tarball,
        )  # fmt: skip
        pwgen("provision", "--sites", str(sites), cwd=project)
        configs = {"lean pool": None, "Parsl's launch": parsl_launch_config(project, sites)}
        for label in SITES:  # warm: the sites' file caches, as for a user's 2nd run
            one_run(project, sites, {}, label)
        for number in range(args.runs):
            # Every other round in reverse: a run right after another shares the machine
            # with that one's cleanup (a PBS job's obit), so no column always follows one.
            for label, launch in COLUMNS if number % 2 == 0 else COLUMNS[::-1]:
                wait_until_idle(project, label)
                first, timings = one_run(project, sites, {}, label, configs[launch])
                firsts[(label, launch)].append(first)
                for step, seconds in timings.items():
                    steps[(label, launch)].setdefault(step, []).append(seconds)
                out.print(f"run {number + 1} {label}, {launch}: first result after {first:.2f} s")
    finally:
        for label in SITES:
            project_ssh(project).stop_master(label)
        pwgen("lab", "down", "--state-dir", str(lab_dir), cwd=project)
    print_table(firsts, steps, args.runs)


def print_table(
    firsts: dict[Column, list[float]], steps: dict[Column, dict[str, list[float]]], runs: int
) -> None:
    table = Table(title=f"`pwgen run` -> first result, one task, median of {runs}")
    table.add_column("step")
    for label, launch in COLUMNS:
        table.add_column(f"{label}: {SITES[label]}, {launch}", justify="right")
    table.add_row("first result", *(f"{statistics.median(firsts[c]):.2f} s" for c in COLUMNS))
    for step in steps[COLUMNS[-1]]:
        medians = (statistics.median(steps[c].get(step, [0])) for c in COLUMNS)
        table.add_row(f"  {step}", *(f"{seconds:.2f} s" for seconds in medians))
    out.print(table)
    for label in SITES:
        lean, parsl = (statistics.median(firsts[(label, launch)]) for launch in LAUNCHES)
        out.print(f"{label}: lean / Parsl's launch {lean / parsl:.2f}")
    out.print(f"load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
