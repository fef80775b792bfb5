"""pwgen.ssh.command: the one builder of ssh/rsync command lines, and a guard that it is.

Fast tests (no lab): the argv of every operation, the quoting of remote commands as the
site's shell sees them, and an AST scan of `pwgen/` for ssh, rsync or scp argvs
assembled outside the `pwgen.ssh` package.
"""

import ast
import shlex
import subprocess
from pathlib import Path

import pytest

from pwgen.ssh import Master, SshCommand, SshSetup, bounded_script

PWGEN = Path(__file__).resolve().parent.parent / "pwgen"
SSH_PACKAGE = PWGEN / "ssh"
PROGRAMS = frozenset({"ssh", "rsync", "scp"})
# What runs a program given as its first argument (argv[0] or a file name).
RUNNERS = frozenset(
    {"execvp", "execv", "execlp", "execl", "spawnlp", "Popen", "run", "call", "check_call"}
    | {"check_output", "create_subprocess_exec", "which"}
)
BASE = ["ssh", "-F", "/p/cfg", "-o", "BatchMode=yes", "-o", "ConnectTimeout=7"]


def _is_program(node: ast.AST) -> bool:
    """The program of an argv: ssh, rsync, scp, or the builder's own `SSH` constant."""
    if isinstance(node, ast.Name | ast.Attribute):
        return (node.id if isinstance(node, ast.Name) else node.attr) == "SSH"
    return isinstance(node, ast.Constant) and node.value in PROGRAMS


def _membership_operands(tree: ast.AST) -> set[int]:
    """Lists and tuples on the right of `in` / `not in`: sets of names, not argvs."""
    found: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            for op, right in zip(node.ops, node.comparators, strict=True):
                if isinstance(op, ast.In | ast.NotIn):
                    found.add(id(right))
    return found


def argv_assemblies(source: str) -> list[int]:
    """Lines where an ssh/rsync/scp argv starts: a list or tuple whose first element is
    the program, or the program as a runner's first argument (`os.execvp("ssh", ...)`)."""
    tree = ast.parse(source)
    sets = _membership_operands(tree)
    lines: list[int] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.List | ast.Tuple) and id(node) not in sets:
            if node.elts and _is_program(node.elts[0]):
                lines.append(node.lineno)
        elif isinstance(node, ast.Call) and node.args and _is_program(node.args[0]):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in RUNNERS:
                lines.append(node.lineno)
    return sorted(lines)


def test_the_guard_sees_argvs_and_ignores_names() -> None:
    flagged = """
import os, subprocess
a = ["ssh", "-F", cfg, host]
b = ("rsync", "-a", src, dst)
os.execvp("ssh", argv)
subprocess.run(["scp", f, g])
shutil.which("ssh")
c = [command.SSH, "-G", host]
"""
    assert argv_assemblies(flagged) == [3, 4, 5, 6, 7, 8]
    allowed = """
kind = "ssh" if first == "ssh" else "other"
if proc.kind in ("ssh", "interchange"):
    pass
verb = ["gsutil", "rsync", "-r"]
command: str = "rsync"
text = "ssh -F config host"
"""
    assert argv_assemblies(allowed) == []


def test_no_ssh_argv_is_assembled_outside_the_ssh_package() -> None:
    offenders = [
        f"{path.relative_to(PWGEN.parent)}:{line}"
        for path in sorted(PWGEN.rglob("*.py"))
        if SSH_PACKAGE not in path.parents
        for line in argv_assemblies(path.read_text(encoding="utf-8"))
    ]
    assert offenders == [], f"build these with pwgen.ssh.SshCommand: {offenders}"
    # The builder itself is seen by the scan (the guard is not vacuous).
    assert argv_assemblies((SSH_PACKAGE / "command.py").read_text(encoding="utf-8"))


def test_every_operation_shares_the_options() -> None:
    ssh = SshCommand("/p/cfg", "site1", connect_timeout=7)
    assert ssh.remote("hostname") == [*BASE, "-T", "site1", "--", "hostname"]
    joined = [*BASE, "-o", "ControlMaster=no", "-T", "site1", "--", "true"]
    assert ssh.remote("true", Master.JOIN) == joined
    assert ssh.control("check") == [*BASE, "-O", "check", "site1"]
    forward = ssh.control("forward", "-R", "127.0.0.1:5:127.0.0.1:5")
    assert forward == [*BASE, "-O", "forward", "-R", "127.0.0.1:5:127.0.0.1:5", "site1"]
    assert ssh.query() == [*BASE, "-G", "site1"]
    master = ["-o", "ControlMaster=yes", "-o", "ControlPersist=no", "-N", "site1"]
    assert ssh.start_master() == [*BASE, *master]
    assert shlex.split(ssh.rsh()) == [*BASE, "-o", "ControlMaster=no"]
    rsync = ssh.rsync("rsync", ["-rlpt"], "/a b", ssh.remote_path("/x/"))
    assert rsync == ["rsync", "-rlpt", "-e", ssh.rsh(), "/a b", "site1:/x/"]
    # Interactive: the user's terminal, no batch mode; words after `--`.
    assert ssh.interactive() == ["ssh", "-F", "/p/cfg", "site1"]
    assert ssh.interactive(["ls", "-l"]) == ["ssh", "-F", "/p/cfg", "site1", "--", "ls", "-l"]
    with pytest.raises(ValueError, match="ssh -O 'stop'"):
        ssh.control("stop")
    with pytest.raises(ValueError, match="expected a Host alias"):
        SshCommand("/p/cfg", "-oProxyCommand=x")


def test_setup_argv_is_the_builders() -> None:
    setup = SshSetup(config=Path("/p/cfg"), known_hosts=Path("/p/kh"))
    assert setup.argv("s", "uname") == SshCommand("/p/cfg", "s").remote("uname")
    assert "BatchMode=yes" in setup.argv("s", "uname")
    assert shlex.split(setup.ansible_ssh_args()) == ["-F", "/p/cfg"]
    spaced = SshSetup(config=Path("/my dir/cfg"), known_hosts=Path("/p/kh"))
    assert shlex.split(spaced.ansible_ssh_args()) == ["-F", "/my dir/cfg"]


@pytest.mark.parametrize("login", [False, True])
def test_remote_script_reaches_bash_unchanged(login: bool) -> None:
    """What the login node's shell makes of the remote string: bash gets exactly the script."""
    script = """printf '%s|' "$0" 'it'"'"'s' "a  b" $((1+1)); echo ";done" `echo no`"""
    argv = SshCommand("/p/cfg", "s").script(script, 0, login=login)
    remote = argv[-1]
    assert argv[-2] == "--" and remote == bounded_script(script, 0, login=login)
    shell = ["bash", "-lc" if login else "-c", script]
    # Never a 0 s (unbounded) timeout; the script is one word for bash.
    assert shlex.split(remote) == ["timeout", "-k", "2", "1", *shell]
    # Run it as ssh would have the site's shell do (`sh -c REMOTE`), without ssh.
    done = subprocess.run(["sh", "-c", remote], capture_output=True, text=True, check=True)
    assert done.stdout == "bash|it's|a  b|2|;done no\n"
