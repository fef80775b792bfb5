"""The site's ssh ControlMaster: the one connection the forward and remote commands use.

Started here if none runs (a stale control socket removed first), shared by every
tunnel with the same ControlPath, in this process or another pwgen run (each registers
in pwgen.ssh.users: only the last user stops it), and the way to run a shell snippet on
the login node.
"""

import contextlib
import logging
import os
import subprocess
import tempfile
from pathlib import Path
from typing import IO

from pwgen.poll import poll
from pwgen.ssh import Master, SshCommand, run_script
from pwgen.ssh import users as ssh_users
from pwgen.ssh.query import control_path, master_pid
from pwgen.tunnels.errors import TunnelError

logger = logging.getLogger(__name__)

#: Remote commands of the tunnel itself (short shell snippets).
COMMAND_TIMEOUT = 30


class ControlMaster:
    """The ssh ControlMaster of one site `Host` in pwgen's ssh config.

    ssh_config, host
        pwgen's ssh config (absolute path) and the site's `Host` alias in it.
    connect_timeout
        ssh's `ConnectTimeout` in seconds.
    log_file
        Local file for the output of a master started here (None: a temporary file).
    """

    def __init__(
        self, *, ssh_config: str, host: str, connect_timeout: int, log_file: str | None
    ) -> None:
        self.ssh_config = ssh_config
        self.host = host
        self.connect_timeout = connect_timeout
        self.log_file = log_file
        self.ssh = SshCommand(ssh_config, host, connect_timeout)
        self._proc: subprocess.Popen[bytes] | None = None
        self._control_path: str | None = None
        self._use: Path | None = None  # this tunnel's pwgen.ssh.users token

    def control(self, operation: str, *extra: str) -> subprocess.CompletedProcess[str]:
        """`ssh -O <operation>` on the master (check, exit, forward, cancel)."""
        return subprocess.run(
            self.ssh.control(operation, *extra),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
            check=False,
        )

    def pid(self) -> int | None:
        """The pid of the running master (`ssh -O check`), None if there is none."""
        return master_pid(self.ssh, COMMAND_TIMEOUT)

    def alive(self) -> bool:
        return self.pid() is not None

    def control_path(self) -> str:
        """The master's socket path, as ssh computes it from the config (`ssh -G`)."""
        if self._control_path is None:
            path, why = control_path(self.ssh, COMMAND_TIMEOUT)
            if path is None:
                raise TunnelError(
                    f"site {self.host!r}: {self.ssh_config} sets no ControlPath for it "
                    f"({why or 'ssh -G'}); the tunnel needs a shared master"
                )
            self._control_path = path
        return self._control_path

    def ensure(self) -> str:
        """Make sure a master runs; returns what was done (for the logs)."""
        pid = self.pid()
        if pid is not None:
            return f"master pid {pid} already running"
        path = self.control_path()
        if os.path.exists(path):
            # Left by a master killed with -9: `ControlMaster yes` would run unmultiplexed.
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            logger.info("site %s: removed stale control socket %s", self.host, path)
        log, start = self._open_log()
        with log:
            proc = subprocess.Popen(
                self.ssh.start_master(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,  # Ctrl-C on the terminal must not kill it
            )

            def answered() -> int | None:
                """The master's pid once it answers; 0 once the ssh started here exited."""
                found = self.pid()
                return 0 if found is None and proc.poll() is not None else found

            pid = poll(answered, self.connect_timeout + 5)
            if not pid:
                _stop_process(proc)
                log.seek(start)
                output = " ".join(log.read().decode(errors="replace").split()[-40:])
                raise TunnelError(
                    f"site {self.host!r}: cannot start the ssh master "
                    f"(exit {proc.returncode}): {output or 'no output'}"
                )
        if pid != proc.pid:
            # Another ssh (a provider's `ControlMaster auto`) became the master first.
            _stop_process(proc)
            return f"adopted master pid {pid}"
        self._proc = proc
        return f"started master pid {pid}"

    def _open_log(self) -> tuple[IO[bytes], int]:
        """The file a new master writes to, and where this start's output begins."""
        if self.log_file is None:
            return tempfile.TemporaryFile(), 0
        os.makedirs(os.path.dirname(os.path.abspath(self.log_file)), exist_ok=True)
        handle = open(self.log_file, "a+b")  # noqa: SIM115 - closed by the caller
        return handle, handle.tell()

    def reap(self) -> None:
        """Forget a master started here that has exited."""
        if self._proc is not None and self._proc.poll() is not None:
            self._proc = None

    def register(self) -> None:
        """Count this tunnel as a user of the master of its ControlPath (pwgen.ssh.users)."""
        if self._use is None:
            self._use = ssh_users.register(self.control_path())

    def release(self) -> bool:
        """Unregister; True when no user of the master is left, in any pwgen process.

        A tunnel that never registered (never opened) stops no master: it may be
        someone else's.
        """
        if self._use is None:
            return False
        use, self._use = self._use, None
        return ssh_users.release(use)

    def stop(self) -> None:
        """`ssh -O exit`, and stop a master started here if it is still running."""
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.control("exit")
        if self._proc is not None:
            _stop_process(self._proc)
            self._proc = None

    def run(
        self, command: str, timeout: float = COMMAND_TIMEOUT, stdin: bytes | None = None
    ) -> tuple[int, str, str]:
        """Run a bash snippet on the login node through the master: (exit, stdout, stderr).

        Never becomes a master itself (`ControlMaster=no`): a dead master makes this a
        direct connection, not a new master holding our pipes. Exit 124: the snippet hit
        `timeout` (stopped on the site); 255: ssh failed or did not answer (killed here).
        """
        done = run_script(self.ssh, command, timeout, master=Master.JOIN, stdin=stdin)
        return done.code, done.stdout, done.stderr


def _stop_process(proc: "subprocess.Popen[bytes]") -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
