"""Benchmark: capacity-aware placement against Parsl's random pick (issue 18).

Brings up a lab of its own (2 sites, 1 compute node each, prefix `pwbp`, 10.217.0.0/16)
in a scratch project, gives the sites unequal capacity (lab1 `max_workers_per_node: 2`,
lab2 `1`), provisions them, and runs the same workflow with `pwgen run --placement
capacity` and `--placement random`, rounds interleaved. The workflow waits until both
sites have workers, then times TASKS tasks of SECONDS each, allowed on both sites.

Printed: median makespan of each mode, their ratio (target ≤ 0.75), each against the
ideal (total work ÷ total workers; target ≤ 1.2x for capacity), and tasks per site.

    sudo .venv/bin/python bench/placement.py [--rounds 3] [--tasks 400] [--seconds 0.1]
"""

import argparse
import json
import os
import statistics
import subprocess
import tempfile
from pathlib import Path

import yaml
from common import PWGEN, lab_up, project_ssh, pwgen
from rich.console import Console
from rich.table import Table

PREFIX, SUBNET = "pwbp", "10.217.0.0/16"
WORKERS = {"lab1": 2, "lab2": 1}
err = Console(stderr=True)

WORKFLOW = """\
import json, sys, time
import parsl
from parsl import python_app

@python_app(executors=["lab1", "lab2"])
def work(i, seconds):
    import time
    time.sleep(seconds)
    return i

tasks, seconds = int(sys.argv[1]), float(sys.argv[2])
executors = parsl.dfk().executors
while not all(executors[site].connected_managers() for site in ("lab1", "lab2")):
    time.sleep(0.2)
started = time.perf_counter()
results = [f.result() for f in [work(i, seconds) for i in range(tasks)]]
assert sorted(results) == list(range(tasks))
print("makespan", json.dumps(time.perf_counter() - started))
"""


def one_run(
    project: Path, sites: Path, mode: str, tasks: int, seconds: float
) -> tuple[float, dict[str, int]]:
    """One `pwgen run --placement MODE`: the workflow's makespan and its tasks per site."""
    argv = [str(PWGEN), "run", "wf.py", "--sites", str(sites), "--placement", mode, "--json", "-q"]
    done = subprocess.run(
        [*argv, "--", str(tasks), str(seconds)], cwd=project, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise SystemExit(f"pwgen run --placement {mode} failed:\n{done.stderr}")
    makespan = next(
        float(line.split()[1]) for line in done.stdout.splitlines() if line.startswith("makespan")
    )
    run_id = json.loads(done.stdout.splitlines()[-1])["run_id"]
    manifest = json.loads((project / ".pwgen" / "runs" / run_id / "manifest.json").read_text())
    return makespan, manifest["failover"]["completed"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tasks", type=int, default=400)
    parser.add_argument("--seconds", type=float, default=0.1)
    args = parser.parse_args()
    os.environ["PATH"] = f"{PWGEN.parent}{os.pathsep}{os.environ['PATH']}"
    project = Path(tempfile.mkdtemp(prefix="pwgen-placement-bench-"))
    lab_dir = project / "lab"
    (project / "wf.py").write_text(WORKFLOW)
    found: dict[str, list[float]] = {"capacity": [], "random": []}
    split: dict[str, dict[str, int]] = {}
    try:
        lab_up(project, lab_dir, PREFIX, SUBNET, sites=2)
        sites = yaml.safe_load((lab_dir / "sites.yaml").read_text())
        for site in sites["sites"]:
            site["max_workers_per_node"] = WORKERS[site["label"]]
        bench_sites = project / "sites.yaml"
        bench_sites.write_text(yaml.safe_dump(sites))
        known = ["--known-hosts", str(lab_dir / "known_hosts")]
        pwgen("provision", "--sites", str(bench_sites), *known, cwd=project)
        for number in range(args.rounds):
            for mode in ("capacity", "random") if number % 2 == 0 else ("random", "capacity"):
                makespan, split[mode] = one_run(
                    project, bench_sites, mode, args.tasks, args.seconds
                )
                found[mode].append(makespan)
            last = {mode: f"{values[-1]:.1f} s" for mode, values in found.items()}
            err.print(f"round {number + 1}/{args.rounds}: {last}")
    finally:
        ssh = project_ssh(project)
        for label in WORKERS:
            ssh.stop_master(label)
        if (lab_dir / "lab.json").exists():
            pwgen("lab", "down", "--state-dir", str(lab_dir), cwd=project)
    report(found, split, args)


def report(
    found: dict[str, list[float]], split: dict[str, dict[str, int]], args: argparse.Namespace
) -> None:
    ideal = args.tasks * args.seconds / sum(WORKERS.values())
    median = {mode: statistics.median(values) for mode, values in found.items()}
    table = Table(
        title=f"Issue 18 benchmark: {args.tasks} tasks of {args.seconds:g} s on 2 lab sites "
        f"with {WORKERS['lab1']} and {WORKERS['lab2']} workers, median of {args.rounds} rounds",
        title_justify="left",
        caption=f"{os.cpu_count()} CPUs; ideal = total work ÷ total workers = {ideal:.1f} s "
        f"(start-up excluded: timed once both sites have workers)",
        caption_justify="left",
    )
    for column in ("placement", "makespan", "rounds", "÷ ideal", "tasks lab1 / lab2 (last)"):
        table.add_column(column, justify="right")
    for mode in ("capacity", "random"):
        tasks = split.get(mode, {})
        table.add_row(
            mode,
            f"{median[mode]:.1f} s",
            ", ".join(f"{v:.1f}" for v in found[mode]),
            f"{median[mode] / ideal:.2f}",
            f"{tasks.get('lab1', 0)} / {tasks.get('lab2', 0)}",
        )
    table.add_row("capacity ÷ random", f"{median['capacity'] / median['random']:.2f}", "", "", "")
    Console(width=120).print(table)


if __name__ == "__main__":
    main()
