"""Benchmark: `pwgen run` -> first result on provisioned lab sites (issue 18), with the
site start-up overlapped and serial, side by side in one run.

Brings up a lab of its own (2 sites, 1 compute node each, prefix `pwfr`,
10.229.0.0/16) in a scratch project, provisions it with the CLI, then runs `pwgen run`
(the CLI, as a user would) of a workflow that sends one task to lab1 and prints when
its result is back, RUNS times in each mode, the modes alternating:

- overlapped: preflight, every site's tunnel and certificates and its first block
  submission run at once (pwgen's default);
- serial: `PWGEN_SERIAL_START=1`, one step after the other as before.

Reported per mode: the median of process start -> first result, of each step the
run manifest times (`timings`), and of process start -> lab1's first block submitted
(Parsl's log) and -> its manager registered (the interchange's log). The lab is
always taken down.

    sudo .venv/bin/python bench/first_result.py [--runs 5]

Target (issue 18): first result <= 2 s, median of 5.
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import PWGEN, lab_up, project_ssh, pwgen
from rich.console import Console
from rich.table import Table

PREFIX, SUBNET = "pwfr", "10.229.0.0/16"
TARGET = 2.0
MARK = "pwfr-first-result"
MODES = {"overlapped": {}, "serial": {"PWGEN_SERIAL_START": "1"}}

WORKFLOW = f'''"""One task on the site named in argv (lab1); prints when its result is back."""
import sys, time
from parsl import python_app


def one():
    return 1


one = python_app(one, executors=[sys.argv[1] if len(sys.argv) > 1 else "lab1"])


value = one().result()
print(f"{MARK} {{time.time():.6f}} {{value}}", flush=True)
'''

out = Console()
STAMP = re.compile(r"^(\d+\.\d+) ")  # Parsl's log lines start with the epoch time
#: Milestones in the run's logs: (name, log file under runinfo/000, text in the line);
#: {label} is the site's.
MILESTONES = (
    ("block submitted", "parsl.log", "Launched block 0 with job ID"),
    ("manager registered", "{label}/interchange.log", "Registration info for manager"),
)


def logged_at(path: Path, text: str, label: str = "lab1") -> float | None:
    """The wall-clock time of the first line of `path` holding `text` (about `label`)."""
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return None
    for line in lines:
        match = STAMP.match(line)
        if match and text in line and (label in line or "interchange" in str(path)):
            return float(match.group(1))
    return None


def one_run(
    project: Path,
    sites: Path,
    env: dict[str, str],
    label: str = "lab1",
    config: Path | None = None,
) -> tuple[float, dict[str, float]]:
    """process start -> first result (s) of a task on `label` (with the `config` module
    instead of pwgen's, if given), and the manifest's timings."""
    argv = [str(PWGEN), "run", "first.py", "--sites", str(sites)]
    argv += ["--config", str(config)] if config else []
    argv += ["--", label]
    started = time.time()
    done = subprocess.run(
        argv, cwd=project, capture_output=True, text=True, env={**os.environ, **env}, timeout=300
    )
    if done.returncode != 0:
        sys.exit(f"bench: pwgen run failed ({done.returncode}): {done.stderr}")
    stamp = next(
        float(line.split()[1]) for line in done.stdout.splitlines() if line.startswith(MARK)
    )
    run_dir = max((project / ".pwgen" / "runs").iterdir(), key=os.path.getmtime)
    timings: dict[str, float] = json.loads((run_dir / "manifest.json").read_text())["timings"]
    for name, log, text in MILESTONES:
        at = logged_at(run_dir / "runinfo" / "000" / log.format(label=label), text, label)
        if at is not None:
            timings[f"start -> {name}"] = at - started
    return stamp - started, timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="`pwgen run`s per mode")
    args = parser.parse_args()
    project = Path(tempfile.mkdtemp(prefix="pwgen-bench-first-"))
    lab_dir = project / "lab"
    sites = lab_dir / "sites.yaml"
    (project / "first.py").write_text(WORKFLOW)
    firsts: dict[str, list[float]] = {mode: [] for mode in MODES}
    steps: dict[str, dict[str, list[float]]] = {mode: {} for mode in MODES}
    try:
        lab_up(project, lab_dir, PREFIX, SUBNET, 2)
        pwgen("provision", "--sites", str(sites), cwd=project)
        one_run(project, sites, {})  # warm: the sites' file caches, as for a user's 2nd run
        for number in range(args.runs):
            for mode, env in MODES.items():
                first, timings = one_run(project, sites, env)
                firsts[mode].append(first)
                for step, seconds in timings.items():
                    steps[mode].setdefault(step, []).append(seconds)
                out.print(f"run {number + 1} {mode}: first result after {first:.2f} s {timings}")
    finally:
        for label in ("lab1", "lab2"):
            project_ssh(project).stop_master(label)
        pwgen("lab", "down", "--state-dir", str(lab_dir), cwd=project)
    table = Table(title=f"`pwgen run` -> first result on 2 lab sites, median of {args.runs}")
    table.add_column("step")
    for mode in MODES:
        table.add_column(mode, justify="right")
    table.add_row("first result", *(f"{statistics.median(firsts[m]):.2f} s" for m in MODES))
    for step in steps["serial"]:
        table.add_row(
            f"  {step}", *(f"{statistics.median(steps[m].get(step, [0])):.2f} s" for m in MODES)
        )
    out.print(table)
    best = statistics.median(firsts["overlapped"])
    verdict = "pass" if best <= TARGET else "FAIL"
    out.print(f"target <= {TARGET:.0f} s: {verdict}; load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
