"""Site facts: whether the site's sshd allows GatewayPorts (the listening sshd's own
configuration). Standard library only: it runs on the site with the module."""

from __future__ import annotations

import glob
import os
import shlex
import shutil
from collections.abc import Callable, Iterator
from typing import Any

# Runs a command on the site: argv -> (rc, stdout, stderr) (the module's run_command).
Runner = Callable[[list[str]], tuple[int, str, str]]

_SSHD_CONFIG = "/etc/ssh/sshd_config"
_SSHD_PROGRAMS = ("sshd", "sshd-session", "sshd-auth")


# ------------------------------------------------------------------ sshd GatewayPorts


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(comm, ppid) of a process, or None when it cannot be read."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as handle:
            text = handle.read()
    except OSError:
        return None
    comm = text[text.find("(") + 1 : text.rfind(")")]
    fields = text[text.rfind(")") + 2 :].split()
    return comm, int(fields[1])


def serving_sshd_pid(start: int) -> int | None:
    """The listening sshd this session descends from: the topmost sshd ancestor."""
    found = None
    pid = start
    for _step in range(64):
        stat = _proc_stat(pid)
        if stat is None:
            break
        comm, parent = stat
        if comm in _SSHD_PROGRAMS:
            found = pid
        elif found is not None:
            break
        if parent <= 1:
            break
        pid = parent
    return found


def parse_sshd_argv(cmdline: bytes) -> tuple[str | None, str | None, dict[str, str]]:
    """(program, -f config, -o options) from a listener's /proc cmdline.

    sshd rewrites its title (`sshd: /usr/sbin/sshd -f /etc/x [listener] ...`), so
    split on NULs and spaces alike.
    """
    tokens = cmdline.replace(b"\0", b" ").decode("utf-8", "replace").split()
    if tokens and tokens[0] == "sshd:":
        tokens = tokens[1:]
    program = tokens[0] if tokens and tokens[0].startswith("/") else None
    config = None
    options: dict[str, str] = {}
    index = 0
    while index < len(tokens):
        token = tokens[index]
        if token in ("-f", "-o") and index + 1 < len(tokens):
            value, index = tokens[index + 1], index + 1
        elif token.startswith(("-f", "-o")) and len(token) > 2:
            value = token[2:]
        else:
            index += 1
            continue
        if token.startswith("-f"):
            config = value
        else:
            key, _sep, rest = value.replace("=", " ", 1).partition(" ")
            if not rest and index + 1 < len(tokens):  # `-o GatewayPorts yes` split by us
                rest, index = tokens[index + 1], index + 1
            options.setdefault(key.lower(), rest.strip())
        index += 1
    return program, config, options


def _config_lines(path: str, depth: int = 0) -> Iterator[tuple[str, list[str]]]:
    """(keyword, arguments) of an sshd_config, Include files expanded in place."""
    with open(path, encoding="utf-8", errors="replace") as handle:
        lines = handle.read().splitlines()
    for line in lines:
        try:
            words = shlex.split(line, comments=True)
        except ValueError:
            words = line.split("#", 1)[0].split()
        if not words:
            continue
        keyword, *args = words
        if "=" in keyword:  # `Keyword=value`
            keyword, _sep, first = keyword.partition("=")
            args = [first, *args] if first else args
        elif args and args[0].startswith("="):
            args = [args[0][1:], *args[1:]] if args[0] != "=" else args[1:]
        if keyword.lower() == "include" and depth < 16:
            for pattern in args:
                if not os.path.isabs(pattern):
                    pattern = os.path.join("/etc/ssh", pattern)
                for included in sorted(glob.glob(pattern)):
                    yield from _config_lines(included, depth + 1)
            continue
        yield keyword.lower(), args


def gateway_ports_from_config(path: str) -> tuple[str, str | None]:
    """(setting, note) from an sshd_config: the first global GatewayPorts wins, as in sshd.

    Raises OSError when the file (or an included one) cannot be read.
    """
    setting = None
    in_match = False
    matched_elsewhere = False
    for keyword, args in _config_lines(path):
        if keyword == "match":
            in_match = [arg.lower() for arg in args] != ["all"]
        elif keyword == "gatewayports" and args:
            if in_match:
                matched_elsewhere = True
            elif setting is None:
                setting = args[0].lower()
    note = None
    if matched_elsewhere:
        note = "a Match block also sets GatewayPorts; the global value is reported"
    if setting is None:
        return "no", note  # sshd's built-in default
    return setting, note


def parse_sshd_t(text: str) -> str | None:
    for line in text.splitlines():
        key, _sep, value = line.strip().partition(" ")
        if key.lower() == "gatewayports":
            return value.strip().lower()
    return None


def listener_cmdline() -> tuple[bytes | None, str | None]:
    """(command line of the sshd serving this session, or None; why it is None)."""
    pid = serving_sshd_pid(os.getpid())
    if pid is None:
        return None, "no sshd among this process's ancestors"
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return handle.read(), None
    except OSError as err:
        return None, f"cannot read sshd's command line: {err.strerror}"


def gateway_ports(run: Runner, cmdline: bytes | None, note: str | None = None) -> dict[str, Any]:
    """Whether the sshd serving this session allows GatewayPorts, and how we know.

    `cmdline` is that sshd's /proc cmdline (None: unknown, `note` says why; then
    /etc/ssh/sshd_config is assumed). Order: `-o GatewayPorts` on its command line,
    `sshd -T` (needs root on most systems: host keys), then its config file.
    """
    program = config = None
    options: dict[str, str] = {}
    notes = [note] if note else []
    if cmdline is not None:
        program, config, options = parse_sshd_argv(cmdline)
    config = config or _SSHD_CONFIG
    program = program or shutil.which("sshd") or "/usr/sbin/sshd"

    def answer(setting: str, method: str, extra: str | None = None) -> dict[str, Any]:
        allowed: bool | str = setting in ("yes", "clientspecified")
        if setting not in ("yes", "clientspecified", "no"):
            allowed = "unknown"
        return {
            "allowed": allowed,
            "setting": setting,
            "method": method,
            "source": config,
            "reason": "; ".join([*notes, *([extra] if extra else [])]) or None,
        }

    if "gatewayports" in options:  # -o on sshd's command line beats the config file
        return answer(options["gatewayports"].lower(), "command line")

    if os.access(program, os.X_OK):
        argv = [program, "-T", "-f", config]
        for key, value in options.items():
            argv += ["-o", f"{key}={value}"]
        rc, out, stderr = run(argv)
        setting = parse_sshd_t(out) if rc == 0 else None
        if setting:
            return answer(setting, "sshd -T")
        lines = (stderr or out).strip().splitlines()
        notes.append(f"sshd -T failed: {lines[-1] if lines else f'exit {rc}'}")
    try:
        setting, match_note = gateway_ports_from_config(config)
    except OSError as err:
        notes.append(f"cannot read {err.filename or config}: {err.strerror}")
        return {
            "allowed": "unknown",
            "setting": None,
            "method": None,
            "source": config,
            "reason": "; ".join(notes),
        }
    return answer(setting, "sshd_config", match_note)
