"""Shared test helpers: run the real `pwgen` console script and the Ansible tools, find
leftover Parsl processes."""

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
PWGEN = BIN / "pwgen"


def tool_env(**extra: str) -> dict[str, str]:
    """This process's environment without settings that would change what an Ansible tool
    does (ANSIBLE_*, MOLECULE_*, PW_*, PWGEN_*), this venv's bin/ first on PATH."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("ANSIBLE_", "MOLECULE_", "PW_", "PWGEN_"))
    }
    env["PATH"] = os.pathsep.join([str(BIN), env.get("PATH", os.defpath)])
    env["NO_COLOR"] = "1"
    env.update(extra)
    return env


def run_tool(
    argv: list[str], cwd: Path, timeout: float, **env: str
) -> subprocess.CompletedProcess[str]:
    """Run an Ansible tool (ansible-lint, molecule, ansible-galaxy, ...) in `tool_env`."""
    return subprocess.run(
        argv,
        cwd=cwd,
        env=tool_env(**env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def run_pwgen(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run the installed `pwgen` as a user would, capturing its output."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("PW_", "PWGEN_"))}
    full_env.update(env or {})
    return subprocess.run(
        [str(PWGEN), *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def run_ok(argv: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run a program; the test fails (showing its output) unless it exits 0."""
    done = subprocess.run(
        argv, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def parsl_processes() -> list[str]:
    """Live (non-zombie) interchange and worker-pool processes on this machine."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        markers = ("parsl: ", "interchange.py", "process_worker_pool")
        if state != "Z" and any(marker in cmdline for marker in markers):
            found.append(f"{proc.name}: {cmdline}")
    return found


def assert_one_line_error(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    """Bad input: exit 2, exactly one line on stderr naming the problem, no traceback."""
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("pwgen: error: "), lines[0]
    assert "Traceback" not in result.stderr + result.stdout
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


class Recorder:
    """Stands in for the providers' `_run_remote` (the `recorder` fixture): records
    (command, stdin) and answers like a site."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str | None]] = []

    def __call__(
        self, provider: Any, cmd: str, timeout: float, *, login: bool, stdin: bytes | None = None
    ) -> tuple[int, str, str]:
        self.calls.append((cmd, None if stdin is None else stdin.decode()))
        if cmd.startswith("sacct"):
            return 1, "", "Slurm accounting storage is disabled"
        if cmd.startswith("sbatch"):
            return 0, "Submitted batch job 42\n", ""
        # Stand-in answers for the offline command-line tests; the real ones run against
        # real Slurm and OpenPBS (test_providers.py's lab tests, test_pbs_run_lab.py).
        if cmd.startswith("qsub"):
            return 0, "42.pbs\n", ""
        if cmd.startswith("qstat"):
            return 0, '{"Jobs": {"42.pbs": {"job_state": "R"}}}', ""
        return 0, "", ""

    def commands(self) -> list[str]:
        return [cmd for cmd, _ in self.calls]

    def copied(self) -> str:
        texts = [stdin for cmd, stdin in self.calls if stdin is not None]
        assert len(texts) == 1
        return texts[0]
