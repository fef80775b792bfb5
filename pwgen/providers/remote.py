"""Run a Parsl cluster provider's scheduler commands on a site's login node over SSH.

Current Parsl providers run `sbatch`/`qsub`/`squeue`/... only on the local machine,
through `ClusterProvider.execute_wait(cmd, timeout)`. `RemoteClusterProvider` is a
mixin that sits in front of a Parsl provider class in the MRO (see `slurm.py`,
`pbspro.py`) and changes exactly three things:

* `execute_wait` runs the command on the login node (argv from `pwgen.ssh.SshCommand`):
  `ssh -F CONFIG -o BatchMode=yes -o ConnectTimeout=N -T HOST -- timeout -k 2 T bash -lc 'CMD'`.
  A login shell, so `sbatch`/`qsub` are on PATH as in an interactive session. Every call
  goes through the ssh config's ControlMaster when it has one (pwgen's does).
* `submit` maps local paths to remote ones. The DFK sets `script_dir` to a LOCAL
  directory, and the parent's `submit()` derives everything from it: the script path
  given to `sbatch`/`qsub`, `--output/--error` (`#PBS -o/-e`), the launcher's
  `SCRIPT_DIR`, the `job_stdout_path`/`job_stderr_path` it records. So `submit()` sets
  `script_dir` to `remote_script_dir` (under a lock) for the duration of the parent's
  `submit()` and puts the local one back afterwards. Every path the parent computes is
  then remote by construction, with no text rewriting of scheduler directives: the
  override is a few lines and stays right when Parsl's templates change.
* `_write_submit_script` receives the (remote) script path: it writes the script
  locally, under the DFK's local `script_dir` with the same file name (a faithful copy
  of what the site runs), then copies it to the site through the same master
  (`cat > PATH` over ssh, umask 077). As a safety net, any remaining occurrence of the
  local script dir in the text (a user command naming it) is replaced by the remote one.

Timeouts (`pwgen.ssh.run_script`, shared with the tunnels), measured on the lab:
killing a local `ssh` client that shares a master neither stops the remote command
nor closes the client's pipes (the master holds them), so `subprocess.communicate`
would hang. Hence the remote side enforces the timeout itself (`timeout -k 2 T`,
exit 124), and the local side kills the ssh process group as a backstop (a hung
master or network) after `T + connect_timeout + 3` s, stops reading its pipes and
returns exit 255.
Unlike `parsl.utils.execute_wait`, which raises `subprocess.TimeoutExpired` and leaves
the child running, a timeout is a non-zero return code: Parsl handles those
everywhere (`_status` skips the update, `cancel` returns False) while an exception
out of `cancel` would abort the DFK's cleanup of the other executors.

At construction, the subclasses run one remote command before the Parsl parent's
constructor: `mkdir -p remote_script_dir` (umask 077). If ssh itself fails (exit 255
or no answer in time) they raise `ProviderConnectionError`, instead of letting
`SlurmProvider.__init__`'s `sacct -X` probe fail and silently select `squeue`.
"""

import logging
import os
import posixpath
import shlex
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from parsl.errors import ConfigurationError
from parsl.providers.cluster_provider import ClusterProvider
from parsl.providers.errors import ExecutionProviderException, ScriptPathError

from pwgen.errors import PwgenError
from pwgen.ssh import SSH_FAILED, SshCommand, run_script

logger = logging.getLogger(__name__)

#: Exit code of a command stopped by the remote `timeout` (as GNU timeout reports it).
TIMEOUT_EXIT = 124
#: Largest job output `fetch_job_output` returns per stream (the tail is kept).
MAX_OUTPUT_BYTES = 1_000_000


class ProviderConnectionError(ExecutionProviderException, PwgenError):
    """ssh to the site's login node failed: nothing ran there."""

    def __init__(self, host: str, detail: str) -> None:
        super().__init__(host, detail)
        self.host = host
        self.detail = detail

    def __str__(self) -> str:
        detail = " ".join(self.detail.split()) or "no error message"
        return f"cannot run commands on site {self.host!r} over ssh: {detail}"


class RemoteClusterProvider(ClusterProvider):
    """Mixin: SSH execution and local-to-remote path mapping for a Parsl ClusterProvider.

    Put it first among the bases, before the Parsl provider class, and call
    `_setup_remote()` and `_connect()` BEFORE the Parsl constructor (which may already
    run scheduler commands). The keyword-only arguments its subclasses take:

    ssh_config : str (required)
        Path of an OpenSSH client config on this machine (`ssh -F`), e.g. pwgen's
        `.pwgen/ssh/config`. It should pin the site's host key and share one connection
        (`ControlMaster auto`, `ControlPath`, `ControlPersist`); without a master every
        command opens a new connection.
    host : str (required)
        The `Host` alias of the login node in `ssh_config` (pwgen: the site label).
    remote_script_dir : str (required)
        Absolute directory on the login node, on a filesystem the compute nodes share
        (e.g. under the site user's home), for submit scripts and block stdout/stderr.
        Created with `mkdir -p` (umask 077) at construction and before every copy.
    connect_timeout : int (default 10)
        ssh `ConnectTimeout` in seconds.
    """

    ssh_config: str
    host: str
    remote_script_dir: str
    connect_timeout: int
    cmd_timeout: int

    def _setup_remote(
        self,
        ssh_config: str,
        host: str,
        remote_script_dir: str,
        connect_timeout: int,
        cmd_timeout: int,
    ) -> None:
        """Check and store the SSH settings (no network access)."""
        if not os.path.isfile(os.path.expanduser(ssh_config)):
            raise ConfigurationError(f"ssh_config {ssh_config!r}: no such file")
        if not host or host.startswith("-"):
            raise ConfigurationError(f"host {host!r}: expected a Host alias of {ssh_config}")
        if not posixpath.isabs(remote_script_dir):
            raise ConfigurationError(
                f"remote_script_dir {remote_script_dir!r} must be an absolute path on the "
                "site (no ~: scheduler directives such as --output do not expand it)"
            )
        self.ssh_config = ssh_config
        self.host = host
        self.remote_script_dir = remote_script_dir
        self.connect_timeout = connect_timeout
        # The Parsl constructor sets it too, but may call execute_wait before it does.
        self.cmd_timeout = cmd_timeout
        self._ssh_config_path = os.path.abspath(os.path.expanduser(ssh_config))
        self._remote_dir = posixpath.normpath(remote_script_dir)
        self._ssh = SshCommand(self._ssh_config_path, host, connect_timeout)
        self._submit_lock = threading.Lock()
        self._local_script_dir: str | None = None
        # While True (construction), a failing ssh raises instead of returning 255.
        self._strict_connection = False

    def _connect(self) -> None:
        """Create remote_script_dir on the site; raise if ssh itself fails."""
        mkdir = f"umask 077 && mkdir -p -- {shlex.quote(self._remote_dir)}"
        retcode, _, stderr = self._run_remote(mkdir, self.cmd_timeout, login=False)
        if retcode == SSH_FAILED:
            raise ProviderConnectionError(self.host, stderr)
        if retcode == TIMEOUT_EXIT:
            reason = f"mkdir timed out after {self.cmd_timeout} s"
            raise _script_path_error(self._remote_dir, reason)
        if retcode != 0:
            raise _script_path_error(self._remote_dir, stderr.strip() or f"mkdir exit {retcode}")

    # --- running commands on the login node -------------------------------------------

    def execute_wait(self, cmd: str, timeout: int | None = None) -> tuple[int, str, str]:
        """Run `cmd` in a login shell on the login node: (retcode, stdout, stderr).

        Exit 124: the command hit the timeout (killed on the site). Exit 255: ssh failed
        or did not answer (its process is killed).
        """
        seconds = self.cmd_timeout if timeout is None else timeout
        logger.debug("Running on %s: %s", self.host, cmd)
        retcode, stdout, stderr = self._run_remote(cmd, seconds, login=True)
        if retcode == SSH_FAILED and self._strict_connection:
            raise ProviderConnectionError(self.host, stderr)
        return retcode, stdout, stderr

    def _run_remote(
        self, cmd: str, timeout: float, *, login: bool, stdin: bytes | None = None
    ) -> tuple[int, str, str]:
        done = run_script(self._ssh, cmd, timeout, login=login, stdin=stdin)
        if done.killed:
            logger.warning("ssh to %s timed out running %r; killed", self.host, cmd)
        return done.code, done.stdout, done.stderr

    # --- submit scripts: local paths become remote paths --------------------------------

    def submit(self, command: str, tasks_per_node: int, job_name: str | None = None) -> Any:
        """The parent's submit, with `script_dir` set to `remote_script_dir` meanwhile."""
        with self._remote_script_dir():
            # The Parsl class after this mixin in the MRO implements submit.
            if job_name is None:
                return super().submit(command, tasks_per_node)  # type: ignore[safe-super]
            return super().submit(command, tasks_per_node, job_name)  # type: ignore[safe-super]

    @contextmanager
    def _remote_script_dir(self) -> Iterator[None]:
        with self._submit_lock:
            local = self.script_dir
            if not local:
                raise _script_path_error(
                    "script_dir", "not set: the DFK sets it; set provider.script_dir by hand"
                )
            self._local_script_dir = local
            self.script_dir = self._remote_dir
            try:
                yield
            finally:
                self.script_dir = local
                self._local_script_dir = None

    def _write_submit_script(
        self, template: str, script_filename: str, job_name: str, configs: dict[str, Any]
    ) -> None:
        """Write the script locally (same name, local script dir), then copy it to the site.

        Overrides a private ClusterProvider method (a row of
        pwgen.parsl_checks.ASSUMPTIONS, checked against the installed Parsl)."""
        local_dir = self._local_script_dir or self.script_dir
        if local_dir is None:
            raise _script_path_error(script_filename, "script_dir is not set")
        name = posixpath.basename(script_filename)
        remote_path = posixpath.join(self._remote_dir, name)
        local_path = os.path.join(local_dir, name)
        super()._write_submit_script(  # type: ignore[no-untyped-call]
            template, local_path, job_name, configs
        )
        with open(local_path, encoding="utf-8") as handle:
            text = handle.read()
        local_abs = os.path.abspath(local_dir)
        if local_abs != self._remote_dir and local_abs in text:
            logger.warning("Submit script names the local dir %s: mapped to the site", local_abs)
            text = text.replace(local_abs, self._remote_dir)
            with open(local_path, "w", encoding="utf-8") as handle:
                handle.write(text)
        self._copy_to_site(text, remote_path)

    def _copy_to_site(self, text: str, remote_path: str) -> None:
        directory = posixpath.dirname(remote_path)
        copy = (
            f"umask 077 && mkdir -p -- {shlex.quote(directory)} && cat > {shlex.quote(remote_path)}"
        )
        retcode, _, stderr = self._run_remote(
            copy, self.cmd_timeout, login=False, stdin=text.encode()
        )
        if retcode != 0:
            raise _script_path_error(f"{self.host}:{remote_path}", stderr.strip() or retcode)
        logger.debug("Copied submit script to %s:%s", self.host, remote_path)

    # --- job output -------------------------------------------------------------------

    def fetch_job_output(self, job_id: str) -> tuple[str, str]:
        """A job's scheduler stdout and stderr, read from the site (empty if not written yet).

        Block status is polled only every 60 s and a block that dies on the site looks
        like a hang from here: this shows why. At most the last MAX_OUTPUT_BYTES of each.
        """
        job = self.resources.get(job_id)
        if job is None:
            raise KeyError(f"unknown job id {job_id!r} for provider {self.label}")
        streams = []
        for key in ("job_stdout_path", "job_stderr_path"):
            path = shlex.quote(job[key])
            read = f"if [ -f {path} ]; then tail -c {MAX_OUTPUT_BYTES} -- {path}; fi"
            retcode, stdout, stderr = self._run_remote(read, self.cmd_timeout, login=False)
            if retcode != 0:
                raise ProviderConnectionError(self.host, stderr or f"exit {retcode}")
            streams.append(stdout)
        return streams[0], streams[1]


def _script_path_error(path: str, reason: object) -> ScriptPathError:
    return ScriptPathError(path, reason)  # type: ignore[no-untyped-call]
