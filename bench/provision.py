"""Benchmark: cold and warm `pwgen provision` of 1, 2 and 4 lab sites, side by side.

Cold: a fresh lab (no env on the sites) with the controller's wheel cache already
filled (the one-time `pip download` is not what this measures). Warm: the same
command again, with nothing left to change. Runs the CLI as its own process, in a
scratch project directory, with a lab prefix and range of its own.

    sudo .venv/bin/python bench/provision.py

Targets (issue 4): warm 4 sites <= 10 s and <= 1.5x one site; cold 2 sites <= 60 s.
"""

import shutil
import tempfile
from pathlib import Path

from common import lab_up, pwgen
from rich.console import Console
from rich.table import Table

PREFIX = "pwbp"
SUBNET = "10.241.0.0/16"
SITE_COUNTS = (1, 2, 4)


def measure(sites: int, project: Path) -> tuple[float, float]:
    lab_dir = project / "lab"
    lab = ["--state-dir", str(lab_dir)]
    lab_up(project, lab_dir, PREFIX, SUBNET, sites)
    try:
        provision = ["provision", "--sites", str(lab_dir / "sites.yaml"), "--json"]
        cold = pwgen(*provision, cwd=project)
        warm = pwgen(*provision, cwd=project)
    finally:
        pwgen("lab", "down", *lab, cwd=project)
    return cold, warm


def main() -> None:
    project = Path(tempfile.mkdtemp(prefix="pwgen-provision-bench-"))
    try:
        # Fill the controller's wheel cache once, so "cold" measures the sites only.
        measure(1, project)
        results = {sites: measure(sites, project) for sites in SITE_COUNTS}
    finally:
        shutil.rmtree(project, ignore_errors=True)
    table = Table(title="pwgen provision (s, CLI wall time)", title_justify="left")
    for column in ("sites", "cold", "warm", "warm / warm(1 site)"):
        table.add_column(column, justify="right")
    one_warm = results[1][1]
    for sites, (cold, warm) in results.items():
        table.add_row(str(sites), f"{cold:.1f}", f"{warm:.1f}", f"{warm / one_warm:.2f}x")
    Console().print(table)


if __name__ == "__main__":
    main()
