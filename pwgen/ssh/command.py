"""Every ssh and rsync command line pwgen runs for a site: the only place they are built.

A command needs only pwgen's ssh config path and the site's `Host` alias in it (strings:
the generated Parsl config hands exactly these to providers and tunnels, which run in
Parsl's processes). Every non-interactive call gets the same options:

    ssh -F CONFIG -o BatchMode=yes -o ConnectTimeout=N ...

and uses the site's one ControlMaster (ControlPath in the config) in one of two ways:

    Master.AUTO   the config's `ControlMaster auto`: join the running master or become
                  it (scheduler commands, preflight, site-side runs)
    Master.JOIN   `ControlMaster=no`: join the running master, never become one, so no
                  master holds our pipes (tunnel snippets, rsync, status and teardown)

`start_master()` starts the master itself (`ControlMaster=yes`, foreground `-N`).
A remote command is ONE shell string, handed to the login shell as is: quote what goes
into it (`shlex.quote`, `script()`).
"""

import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

SSH = "ssh"
#: ssh's `ConnectTimeout` in seconds when the caller names none.
CONNECT_TIMEOUT = 10
#: Seconds between the remote `timeout`'s TERM and its KILL (`script()`).
KILL_AFTER = 2
#: What `ssh -O` can ask a running master.
CONTROL_OPERATIONS = frozenset({"check", "exit", "forward", "cancel"})


class Master(StrEnum):
    """How a command uses the site's ControlMaster (see the module docstring)."""

    AUTO = "auto"
    JOIN = "join"


@dataclass(frozen=True)
class SshCommand:
    """The ssh (and rsync) argvs of one site: `Host` alias `host` of the ssh config `config`."""

    config: str
    host: str
    connect_timeout: int = CONNECT_TIMEOUT

    def __post_init__(self) -> None:
        if not self.host or self.host.startswith("-"):
            raise ValueError(f"host {self.host!r}: expected a Host alias of {self.config}")

    def options(self, master: Master = Master.AUTO) -> list[str]:
        """`ssh` and the options every non-interactive call shares (no host yet)."""
        argv = [SSH, "-F", self.config, "-o", "BatchMode=yes"]
        argv += ["-o", f"ConnectTimeout={self.connect_timeout}"]
        if master is Master.JOIN:
            argv += ["-o", "ControlMaster=no"]
        return argv

    def remote(self, command: str, master: Master = Master.AUTO) -> list[str]:
        """Run the shell string `command` on the login node, no pty (stdout, stderr apart)."""
        return [*self.options(master), "-T", self.host, "--", command]

    def script(
        self, script: str, seconds: int, *, login: bool = False, master: Master = Master.AUTO
    ) -> list[str]:
        """Run a bash script on the login node, stopped THERE after `seconds` (exit 124).

        `login`: a login shell (`bash -l`), so schedulers are on PATH as interactively.
        """
        return self.remote(bounded_script(script, seconds, login=login), master)

    def control(self, operation: str, *forward: str) -> list[str]:
        """`ssh -O check|exit|forward|cancel` to the running master (`forward`: `-R SPEC`)."""
        if operation not in CONTROL_OPERATIONS:
            raise ValueError(f"ssh -O {operation!r}: not one of {sorted(CONTROL_OPERATIONS)}")
        return [*self.options(), "-O", operation, *forward, self.host]

    def query(self) -> list[str]:
        """`ssh -G`: the settings ssh would use for the site (ControlPath, ...)."""
        return [*self.options(), "-G", self.host]

    def start_master(self) -> list[str]:
        """The site's master in the foreground (`-N`), never persisting after its users."""
        master = ["-o", "ControlMaster=yes", "-o", "ControlPersist=no"]
        return [*self.options(), *master, "-N", self.host]

    def held_master(self) -> list[str]:
        """A master the user opens at the terminal (it may prompt: a password, an MFA
        code), then kept in the background until `ssh -O exit` (pwgen.ssh.hold)."""
        master = ["-o", "ControlMaster=yes", "-o", "ControlPersist=yes"]
        return [SSH, "-F", self.config, *master, "-f", "-N", self.host]

    def rsh(self) -> str:
        """rsync's `-e` (remote shell): ssh through the running master, never a new one."""
        return shlex.join(self.options(Master.JOIN))

    def remote_path(self, path: str) -> str:
        """`host:path`, an rsync operand on the site."""
        return f"{self.host}:{path}"

    def rsync(
        self, program: str, options: Sequence[str], source: str, destination: str
    ) -> list[str]:
        """`rsync OPTIONS -e RSH SOURCE DESTINATION`; one side is a `remote_path()`."""
        return [program, *options, "-e", self.rsh(), source, destination]

    def interactive(self, words: Sequence[str] = ()) -> list[str]:
        """ssh as a user types it: a login session, or `words` run there (ssh joins them)."""
        return [SSH, "-F", self.config, self.host, *(["--", *words] if words else [])]


def bounded_script(script: str, seconds: int, *, login: bool = False) -> str:
    """The remote shell string that runs `script` in bash for at most `seconds`."""
    shell = "bash -lc" if login else "bash -c"
    return f"timeout -k {KILL_AFTER} {max(1, seconds)} {shell} {shlex.quote(script)}"


def ansible_ssh_args(config: str) -> str:
    """Ansible's `ssh_args`: its own ssh reads pwgen's config (pinned keys, the master)."""
    return shlex.join(["-F", config])
