"""pwgen's ssh config and known_hosts: pinned keys, shared masters, no blind trust."""

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from helpers import run_pwgen

from pwgen.sites import parse_sites
from pwgen.ssh import (
    SshError,
    adjacent_known_hosts,
    control_dir,
    ensure_control_dir,
    prepare_ssh,
    render_config,
    users,
)

SITES = parse_sites(
    """\
sites:
  - {label: alpha, scheduler: slurm, host: 192.0.2.10, user: alice, identity_file: /k/id}
  - {label: beta, scheduler: pbspro, host: 192.0.2.20, port: 2222, proxy_jump: bob@gw}
  - {label: here, scheduler: local}
"""
)


def _host_key_line(host: str, tmp_path: Path) -> str:
    key = tmp_path / f"hostkey-{host.strip('[]').replace(':', '_')}"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    return f"{host} {Path(f'{key}.pub').read_text().strip()}"


@pytest.fixture
def pinned(tmp_path: Path) -> Path:
    lines = [_host_key_line("192.0.2.10", tmp_path), _host_key_line("[192.0.2.20]:2222", tmp_path)]
    path = tmp_path / "known_hosts"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_config_pins_keys_and_shares_one_master(tmp_path: Path, pinned: Path) -> None:
    ssh = prepare_ssh(SITES, tmp_path / ".pwgen", [pinned])
    text = ssh.config.read_text()
    assert "Host alpha\n    HostName 192.0.2.10\n    Port 22\n    User alice\n" in text
    assert 'IdentityFile "/k/id"\n    IdentitiesOnly yes' in text
    assert "Host beta\n    HostName 192.0.2.20\n    Port 2222\n    ProxyJump bob@gw" in text
    assert "Host here" not in text  # local sites need no ssh
    assert "StrictHostKeyChecking yes" in text and "StrictHostKeyChecking no" not in text
    assert f'UserKnownHostsFile "{ssh.known_hosts}"' in text
    assert f'ControlPath "{control_dir()}/%C"' in text and "ExitOnForwardFailure yes" in text
    assert ssh.config.stat().st_mode & 0o777 == 0o600
    assert ssh.known_hosts.stat().st_mode & 0o777 == 0o600
    assert ssh.known_hosts.read_text() == pinned.read_text()
    argv = ssh.argv("alpha", "hostname")
    assert argv[:3] == ["ssh", "-F", str(ssh.config)] and argv[-3:] == ["alpha", "--", "hostname"]
    # OpenSSH itself accepts the file and resolves the alias as written.
    resolved = subprocess.run(
        ["ssh", "-G", "-F", str(ssh.config), "beta"], capture_output=True, text=True, check=True
    ).stdout
    assert "hostname 192.0.2.20" in resolved and "port 2222" in resolved
    assert "stricthostkeychecking true" in resolved and "batchmode yes" in resolved


def test_known_hosts_are_merged_not_replaced(tmp_path: Path, pinned: Path) -> None:
    state = tmp_path / ".pwgen"
    prepare_ssh(SITES, state, [pinned])
    extra = tmp_path / "extra_known_hosts"
    extra.write_text(_host_key_line("198.51.100.1", tmp_path) + "\n")
    ssh = prepare_ssh(SITES, state, [extra])
    lines = ssh.known_hosts.read_text().splitlines()
    assert len(lines) == 3 and lines[-1].startswith("198.51.100.1 ")


def test_unpinned_site_is_refused(tmp_path: Path, pinned: Path) -> None:
    only_alpha = tmp_path / "alpha_only"
    only_alpha.write_text(pinned.read_text().splitlines()[0] + "\n")
    with pytest.raises(SshError, match=r"site 'beta': no pinned host key for \[192.0.2.20\]:2222"):
        prepare_ssh(SITES, tmp_path / ".pwgen", [only_alpha])


def test_accept_new_is_explicit(tmp_path: Path) -> None:
    ssh = prepare_ssh(SITES, tmp_path / ".pwgen", [], accept_new_host_keys=True)
    assert "StrictHostKeyChecking accept-new" in ssh.config.read_text()


def test_missing_known_hosts_file(tmp_path: Path) -> None:
    with pytest.raises(SshError, match="nope: known_hosts file not found"):
        prepare_ssh(SITES, tmp_path / ".pwgen", [tmp_path / "nope"])


def test_known_hosts_next_to_the_sites_file_is_not_trusted_silently(
    tmp_path: Path, pinned: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only a known_hosts `pwgen lab` wrote (its state beside it, all private) is used
    without being named; another is offered at a prompt, on a terminal only, and only
    while it holds a key pwgen has not pinned yet."""
    project = tmp_path / "project"
    project.mkdir(mode=0o700)
    sites_file, ours = project / "sites.yaml", tmp_path / ".pwgen" / "ssh" / "known_hosts"
    asked: list[Path] = []

    def confirm(path: Path) -> bool:
        asked.append(path)
        return True

    assert adjacent_known_hosts(sites_file, ours, confirm) == []  # none there
    beside = project / "known_hosts"
    beside.write_text(pinned.read_text())
    assert adjacent_known_hosts(sites_file, ours, confirm) == []  # copied in: not the lab's
    assert asked == []  # stdin is not a terminal here: nobody to ask, so not trusted
    monkeypatch.setattr("sys.stdin.isatty", lambda: True)
    assert adjacent_known_hosts(sites_file, ours, confirm) == [beside] and asked == [beside]
    prepare_ssh(SITES, tmp_path / ".pwgen", [beside])  # the user said yes: pinned now
    assert adjacent_known_hosts(sites_file, ours, confirm) == [] and len(asked) == 1
    monkeypatch.undo()
    (project / "lab.json").write_text("{}")
    (project / "lab.json").chmod(0o600)
    assert adjacent_known_hosts(sites_file, ours, confirm) == [beside]  # the lab's own
    beside.chmod(0o666)  # anyone could have rewritten it
    assert adjacent_known_hosts(sites_file, ours, confirm) == []


def test_a_trusted_file_replaces_the_keys_of_the_hosts_it_names(
    tmp_path: Path, pinned: Path
) -> None:
    """A rotated key stops being trusted; other hosts keep their keys."""
    state = tmp_path / ".pwgen"
    prepare_ssh(SITES, state, [pinned])
    rotated = tmp_path / "rotated"
    (tmp_path / "new").mkdir()
    rotated.write_text(_host_key_line("192.0.2.10", tmp_path / "new") + "\n")
    ssh = prepare_ssh(SITES, state, [rotated])
    lines = ssh.known_hosts.read_text().splitlines()
    old_alpha, beta = pinned.read_text().splitlines()
    assert old_alpha not in lines and beta in lines
    assert rotated.read_text().strip() in lines and len(lines) == 2


def test_cert_authority_lines_are_refused(tmp_path: Path, pinned: Path) -> None:
    ca = tmp_path / "ca_known_hosts"
    key = pinned.read_text().splitlines()[0].split(" ", 1)[1]
    ca.write_text(f"@cert-authority *.example.org {key}\n")
    with pytest.raises(SshError, match="line 1: @cert-authority lines are not accepted"):
        prepare_ssh(SITES, tmp_path / ".pwgen", [ca])


def _ssh_settings(config: Path, host: str) -> dict[str, str]:
    """What OpenSSH itself reads from `config` for `host` (`ssh -G`), lower-case keys."""
    done = subprocess.run(
        ["ssh", "-G", "-F", str(config), host], capture_output=True, text=True, check=True
    )
    return dict(line.split(" ", 1) for line in done.stdout.splitlines() if " " in line)


def test_paths_with_spaces_quotes_and_percents_reach_ssh_unchanged(tmp_path: Path) -> None:
    """Every path in the config is one quoted argument: ssh reads back exactly the path."""
    odd = tmp_path / 'my "keys" 100%d'
    odd.mkdir()
    sites = parse_sites(
        f"sites:\n  - {{label: a, scheduler: slurm, host: 192.0.2.1, "
        f"identity_file: '{odd}/id ed25519'}}\n"
    )
    ssh = prepare_ssh(sites, odd / ".pwgen", [], accept_new_host_keys=True)
    settings = _ssh_settings(ssh.config, "a")
    assert settings["userknownhostsfile"] == str(ssh.known_hosts)
    # ssh expands %-tokens in IdentityFile when it loads the key: %% is its literal %.
    assert settings["identityfile"] == f"{odd}/id ed25519".replace("%", "%%")
    assert settings["controlpath"].startswith(f"{control_dir()}/")
    assert "proxycommand" not in settings


def test_a_path_that_would_start_a_new_config_line_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SshError, match="control character"):
        render_config([], tmp_path / "known\nProxyCommand sh", False, tmp_path)


def _squat(directory: Path) -> None:
    """What another local user does first: the socket dir, theirs, open to all."""
    directory.mkdir()
    directory.chmod(0o777)
    os.chown(directory, 65534, 65534)


@pytest.mark.skipif(os.geteuid() != 0, reason="making a directory another user owns needs root")
def test_a_squatted_socket_dir_is_refused_and_its_fake_master_gets_nothing(
    tmp_path: Path, pinned: Path
) -> None:
    """Another user's socket dir (and the fake master they run in it) is never used."""
    runtime = Path(tempfile.mkdtemp(prefix="pwrt-", dir="/tmp"))
    try:
        squatted = runtime / "pwgen"
        _squat(squatted)
        # The fake master listens where ssh would look for alpha's master.
        config = tmp_path / "probe_config"
        config.write_text(render_config(SITES[:1], pinned, False, squatted))
        socket_path = _ssh_settings(config, "alpha")["controlpath"]
        received: list[bytes] = []
        fake = socket.socket(socket.AF_UNIX)
        fake.bind(socket_path)
        fake.listen()
        fake.settimeout(2)
        sites_file = tmp_path / "sites.yaml"
        sites_file.write_text(
            "sites:\n  - {label: alpha, scheduler: slurm, host: 192.0.2.10, user: alice}\n"
        )
        (tmp_path / "known_hosts").write_text(pinned.read_text())
        done = run_pwgen(
            "provision",
            "--sites",
            str(sites_file),
            cwd=tmp_path,
            env={"XDG_RUNTIME_DIR": str(runtime)},
        )
        with contextlib.suppress(TimeoutError):
            connection, _ = fake.accept()
            received.append(connection.recv(4096))
        assert done.returncode == 2, done.stdout + done.stderr
        assert f"{squatted}: is owned by uid 65534" in done.stderr
        assert received == [], "pwgen talked to another user's ssh master"
        assert not (tmp_path / ".pwgen" / "ssh" / "config").exists()
    finally:
        shutil.rmtree(runtime, ignore_errors=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="changing a directory's owner needs root")
def test_socket_dir_checks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    private = tmp_path / "mine"
    assert ensure_control_dir(private) == private and private.stat().st_mode & 0o777 == 0o700
    assert ensure_control_dir(private) == private  # the second time: checked, kept
    private.chmod(0o755)
    with pytest.raises(SshError, match="has mode 0755, not 0700"):
        ensure_control_dir(private)
    (tmp_path / "link").symlink_to(private)
    with pytest.raises(SshError, match="is a symbolic link"):
        ensure_control_dir(tmp_path / "link")
    # A runtime dir that is not private is not used: /tmp/pwgen-cm-<uid> instead.
    runtime = Path(tempfile.mkdtemp(prefix="pwrt-", dir="/tmp"))  # short: sockets go there
    try:
        monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
        assert control_dir() == runtime / "pwgen"
        runtime.chmod(0o755)
        assert control_dir() == Path(f"/tmp/pwgen-cm-{os.getuid()}")
    finally:
        runtime.rmdir()


def test_master_users_are_counted_across_processes(tmp_path: Path) -> None:
    """pwgen.ssh.users: the last live user, in any process, is the one that stops a master."""
    socket_path = str(tmp_path / "master")
    first, second = users.register(socket_path), users.register(socket_path)
    assert not users.release(first)  # this process still holds another use
    other = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pwgen.ssh import users; "
            "users.register(sys.argv[1]); print('ok', flush=True); time.sleep(60)",
            socket_path,
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert other.stdout is not None and other.stdout.readline() == "ok\n"
        assert not users.release(second)  # the other process is a live user
        assert users.in_use(socket_path)
    finally:
        other.kill()
        other.wait()
    # Killed with -9, it left its token: a dead process's token does not count.
    assert not users.in_use(socket_path)
    assert list(users.users_dir(socket_path).iterdir()) == []
    last = users.register(socket_path)
    assert users.release(last) and not users.users_dir(socket_path).exists()  # no litter
