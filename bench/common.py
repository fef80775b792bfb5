"""What the benchmarks share: the timed `pwgen` CLI, the ssh masters of a bench project.

The benchmarks run as scripts (`python bench/X.py`), so this directory is on sys.path.
"""

import subprocess
import sys
import time
from pathlib import Path

from pwgen.layout import StateLayout
from pwgen.ssh.prepare import SshSetup

PWGEN = Path(sys.executable).parent / "pwgen"


def pwgen(*args: str, cwd: Path) -> float:
    """Run one pwgen command; return its wall time in seconds (exit on failure)."""
    started = time.perf_counter()
    done = subprocess.run([str(PWGEN), *args], cwd=cwd, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"`pwgen {' '.join(args)}` failed:\n{done.stdout}\n{done.stderr}")
    return seconds


def provision(project: Path, sites: Path) -> None:
    """`pwgen provision --sites SITES` in `project` (exit with its output on failure)."""
    done = subprocess.run(
        [str(PWGEN), "provision", "--sites", str(sites)],
        cwd=project,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        sys.exit(f"bench: provision failed: {done.stdout}{done.stderr}")


def lab_up(
    project: Path, lab_dir: Path, prefix: str, subnet: str, sites: int, *options: str
) -> float:
    """`pwgen lab up` of a bench's own lab (1 compute node per site); its wall time.
    `options`: more `lab up` options (e.g. `--schedulers pbspro,slurm`)."""
    up = ["up", "--site-count", str(sites), "--compute-nodes", "1", "--name", prefix, *options]
    return pwgen("lab", *up, "--subnet", subnet, "--state-dir", str(lab_dir), cwd=project)


def project_ssh(project: Path) -> SshSetup:
    """The ssh config and pinned keys `pwgen provision` wrote in `project`."""
    layout = StateLayout(project / ".pwgen")
    return SshSetup(layout.ssh_config, layout.known_hosts)
