"""Benchmark: wall time of `pwgen lab up` / `pwgen lab down` for 1, 2 and 4 sites.

Runs the lab CLI as its own process (as a user would, Python start-up included),
with a prefix, range and state dir of its own so a user's lab can stay up.
Needs root and the lab's Debian packages.

    sudo .venv/bin/python bench/lab_updown.py [--rounds 3] [--compute-nodes 2]
"""

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

PREFIX = "pwbench"
SUBNET = "10.253.0.0/16"
SITE_COUNTS = (1, 2, 4)


def lab(*args: str, state_dir: Path) -> float:
    """Run one lab command; return its wall time in seconds."""
    argv = [sys.executable, "-c", "from pwgen.lab.cli import app; app()", *args]
    started = time.perf_counter()
    done = subprocess.run(
        [*argv, "--state-dir", str(state_dir)], capture_output=True, text=True, check=False
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"`lab {' '.join(args)}` failed:\n{done.stderr}")
    return seconds


def measure(sites: int, compute_nodes: int, rounds: int, state_dir: Path) -> dict[str, float]:
    ups, agains, downs = [], [], []
    for _ in range(rounds):
        options = ["--sites", str(sites), "--compute-nodes", str(compute_nodes)]
        ups.append(lab("up", *options, "--name", PREFIX, "--subnet", SUBNET, state_dir=state_dir))
        agains.append(lab("up", state_dir=state_dir))
        downs.append(lab("down", state_dir=state_dir))
    return {
        "up": statistics.median(ups),
        "again": statistics.median(agains),
        "down": statistics.median(downs),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--compute-nodes", type=int, default=2)
    args = parser.parse_args()
    state_dir = Path(tempfile.mkdtemp(prefix="pwgen-lab-bench-")) / "lab"
    table = Table(
        title=f"pwgen lab up/down, {args.compute_nodes} compute nodes per site, "
        f"median of {args.rounds} (s, CLI process wall time)",
        title_justify="left",
    )
    for column in ("sites", "nodes", "up", "up again (no-op)", "down"):
        table.add_column(column, justify="right")
    try:
        for sites in SITE_COUNTS:
            times = measure(sites, args.compute_nodes, args.rounds, state_dir)
            nodes = sites * (args.compute_nodes + 1)
            table.add_row(
                str(sites),
                str(nodes),
                f"{times['up']:.2f}",
                f"{times['again']:.2f}",
                f"{times['down']:.2f}",
            )
    finally:
        if (state_dir / "lab.json").exists():
            lab("down", state_dir=state_dir)
        if not state_dir.exists():
            state_dir.parent.rmdir()
    Console().print(table)


if __name__ == "__main__":
    main()
