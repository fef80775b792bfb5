"""pwgen's ssh config and known_hosts: pinned keys, shared masters, no blind trust."""

import subprocess
from pathlib import Path

import pytest

from pwgen.sites import parse_sites
from pwgen.ssh import CONTROL_DIR, SshError, known_hosts_near, prepare_ssh

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
    assert "IdentityFile /k/id\n    IdentitiesOnly yes" in text
    assert "Host beta\n    HostName 192.0.2.20\n    Port 2222\n    ProxyJump bob@gw" in text
    assert "Host here" not in text  # local sites need no ssh
    assert "StrictHostKeyChecking yes" in text and "StrictHostKeyChecking no" not in text
    assert f"UserKnownHostsFile {ssh.known_hosts}" in text
    assert f"ControlPath {CONTROL_DIR}/%C" in text and "ExitOnForwardFailure yes" in text
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


def test_known_hosts_next_to_the_sites_file(tmp_path: Path) -> None:
    assert known_hosts_near(tmp_path / "sites.yaml") == []
    (tmp_path / "known_hosts").write_text("")
    assert known_hosts_near(tmp_path / "sites.yaml") == [tmp_path / "known_hosts"]
