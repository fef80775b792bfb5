"""pwgen.ssh.run_script, the one bounded remote run (providers and tunnels), against a
fake `ssh` on PATH: exit code and streams pass through; a client that never answers
and whose pipes another process holds (as a ControlMaster does) is killed and drained."""

import contextlib
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pwgen.ssh import SSH_FAILED, Master, SshCommand, run_script

FAKE_SSH = """#!/bin/bash
printf '%s\\n' "$@" > "$FAKE_SSH_DIR/argv"
case "$FAKE_SSH_MODE" in
  answer) cat; echo "remote-error" >&2; exit 3 ;;
  hang)
    echo "before-hang" >&2
    setsid sleep 60 & echo $! > "$FAKE_SSH_DIR/holder.pid"  # holds our pipes, like a master
    exec sleep 60 ;;
esac
"""


@pytest.fixture
def fake_ssh(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "ssh").write_text(FAKE_SSH)
    (bin_dir / "ssh").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_SSH_DIR", str(tmp_path))
    yield tmp_path
    holder = tmp_path / "holder.pid"
    if holder.exists():
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(holder.read_text()), signal.SIGKILL)


def test_exit_code_streams_and_stdin_pass_through(
    fake_ssh: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_SSH_MODE", "answer")
    ssh = SshCommand("/cfg", "site1", connect_timeout=1)
    done = run_script(ssh, "echo hi", 5, master=Master.JOIN, stdin=b"given-on-stdin")
    assert (done.code, done.stdout, done.stderr, done.killed) == (
        3,
        "given-on-stdin",
        "remote-error\n",
        False,
    )
    argv = (fake_ssh / "argv").read_text().splitlines()
    assert argv == ssh.script("echo hi", 5, master=Master.JOIN)[1:]


def test_a_client_that_never_answers_is_killed_and_its_output_kept(
    fake_ssh: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_SSH_MODE", "hang")
    ssh = SshCommand("/cfg", "site1", connect_timeout=1)
    started = time.monotonic()
    done = run_script(ssh, "sleep 600", 1)
    elapsed = time.monotonic() - started
    assert done.code == SSH_FAILED and done.killed
    assert done.stderr.startswith("before-hang\n")
    assert "pwgen: ssh to site1 did not answer within 1 s" in done.stderr
    # Killed by the backstop (1 + 1 + 3 s) and drained briefly, not after the 60 s the
    # held pipes would last (a bound, not a speed target: generous on a loaded machine).
    assert elapsed < 40
