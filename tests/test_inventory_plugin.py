"""The pwgen.hpc.pw inventory plugin, through the real `ansible-inventory` against the local
PW API."""

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pw_server import DEFAULT_KEY, PWServer, basic_auth

from pwgen.assets import ansible_dir

REPO = Path(__file__).resolve().parent.parent
ANSIBLE_INVENTORY = Path(sys.executable).parent / "ansible-inventory"

PW_YML = """\
plugin: pwgen.hpc.pw
timeout: 5
strict: true
keyed_groups:
  - key: pwgen_scheduler
    prefix: sched
compose:
  pwgen_shout: inventory_hostname | upper
  ansible_ssh_private_key_file: "'~/.ssh/id_pw'"
groups:
  slurm_only: pwgen_scheduler == 'slurm'
"""


def ansible_inventory(
    source: Path, env: dict[str, str], tmp_path: Path
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("PW_", "PWGEN_", "ANSIBLE_"))}
    clean.update(
        ANSIBLE_CONFIG=str(ansible_dir() / "ansible.cfg"),
        ANSIBLE_HOME=str(tmp_path / "ansible-home"),
        ANSIBLE_LOCAL_TEMP=str(tmp_path / "ansible-tmp"),
        ANSIBLE_NOCOLOR="1",
        **env,
    )
    return subprocess.run(
        [str(ANSIBLE_INVENTORY), "-i", str(source), "--list"],
        cwd=tmp_path,
        env=clean,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def plain(value: Any) -> Any:
    """ansible-core 2.19 marks strings from a plugin as untrusted: {"__ansible_unsafe": "x"}."""
    if isinstance(value, dict):
        if set(value) == {"__ansible_unsafe"}:
            return value["__ansible_unsafe"]
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [plain(item) for item in value]
    return value


def hosts_of(listing: dict[str, Any], group: str) -> list[str]:
    return sorted(listing.get(group, {}).get("hosts", []))


@pytest.fixture
def pw_yml(tmp_path: Path) -> Path:
    path = tmp_path / "pw.yml"
    path.write_text(PW_YML, encoding="utf-8")
    return path


def test_lists_sites_from_the_api(pw_server: PWServer, pw_yml: Path, tmp_path: Path) -> None:
    result = ansible_inventory(pw_yml, pw_server.env(), tmp_path)
    assert result.returncode == 0, result.stderr
    listing = plain(json.loads(result.stdout))

    assert pw_server.paths == ["/api/clusters"]
    assert pw_server.requests[0].authorization == basic_auth(DEFAULT_KEY)

    both = ["gpu_cluster_v2", "pbs_west"]
    assert hosts_of(listing, "sites") == both
    assert hosts_of(listing, "scheduler_slurm") == ["gpu_cluster_v2"]
    assert hosts_of(listing, "scheduler_pbspro") == ["pbs_west"]
    assert hosts_of(listing, "executor_htex") == both
    # keyed_groups and groups (the `constructed` options)
    assert hosts_of(listing, "sched_slurm") == ["gpu_cluster_v2"]
    assert hosts_of(listing, "sched_pbspro") == ["pbs_west"]
    assert hosts_of(listing, "slurm_only") == ["gpu_cluster_v2"]

    hostvars = listing["_meta"]["hostvars"]
    gpu, pbs = hostvars["gpu_cluster_v2"], hostvars["pbs_west"]
    assert (gpu["ansible_host"], gpu["ansible_user"]) == ("192.0.2.10", "alice")
    assert (pbs["ansible_host"], pbs["ansible_user"]) == ("192.0.2.20", "bob")
    assert (gpu["pwgen_scheduler"], pbs["pwgen_scheduler"]) == ("slurm", "pbspro")
    assert gpu["ansible_port"] == 22 and gpu["pwgen_executor"] == "htex"
    # compose
    assert gpu["pwgen_shout"] == "GPU_CLUSTER_V2"
    assert pbs["ansible_ssh_private_key_file"] == "~/.ssh/id_pw"

    # the skipped clusters are reported, the key never is
    assert "old-cluster (off)" in result.stderr and "bare-vm" in result.stderr
    assert DEFAULT_KEY not in result.stdout + result.stderr


def test_same_hostvars_as_pwgen_inventory(
    pw_server: PWServer, pw_yml: Path, tmp_path: Path
) -> None:
    from pwgen.inventory import site_hostvars
    from pwgen.sources.pw import fetch_sites

    pw_yml.write_text("plugin: pwgen.hpc.pw\n", encoding="utf-8")
    result = ansible_inventory(pw_yml, pw_server.env(), tmp_path)
    assert result.returncode == 0, result.stderr
    hostvars = plain(json.loads(result.stdout))["_meta"]["hostvars"]
    expected = {s.label: site_hostvars(s) for s in fetch_sites(pw_server.env()).sites}
    assert hostvars == json.loads(json.dumps(expected))


def test_legacy_platform(pw_server: PWServer, pw_yml: Path, tmp_path: Path) -> None:
    pw_server.legacy = True
    result = ansible_inventory(pw_yml, pw_server.env(), tmp_path)
    assert result.returncode == 0, result.stderr
    listing = plain(json.loads(result.stdout))
    assert hosts_of(listing, "sites") == ["legacy_one"]
    assert listing["_meta"]["hostvars"]["legacy_one"]["pwgen_workdir"] == "/home/dave/pw"
    assert DEFAULT_KEY not in result.stdout + result.stderr


def test_options_in_the_file_win_over_the_environment(pw_server: PWServer, tmp_path: Path) -> None:
    source = tmp_path / "team_pw.yaml"
    source.write_text(
        f"plugin: pwgen.hpc.pw\napi_key: {pw_server.api_key}\nplatform_host: {pw_server.url}\n",
        encoding="utf-8",
    )
    env = {"PW_API_KEY": "pwt_d3Jvbmc.WrongKey", "PW_PLATFORM_HOST": "http://127.0.0.1:1"}
    result = ansible_inventory(source, env, tmp_path)
    assert result.returncode == 0, result.stderr
    assert hosts_of(json.loads(result.stdout), "sites") == ["gpu_cluster_v2", "pbs_west"]


def test_bad_key_fails_with_one_line_and_no_key(
    pw_server: PWServer, pw_yml: Path, tmp_path: Path
) -> None:
    wrong = "pwt_Y2xvdWQuZXhhbXBsZS5vcmc.TotallyWrongSecret"
    result = ansible_inventory(pw_yml, pw_server.env(PW_API_KEY=wrong), tmp_path)
    assert result.returncode != 0
    expected = (
        f"PW API at 127.0.0.1:{pw_server.port} rejected the key (HTTP 401): "
        "check PW_API_KEY (and that it belongs to this platform)"
    )
    assert expected in result.stderr.splitlines()
    assert "Completely failed to parse inventory source" in result.stderr
    output = result.stdout + result.stderr
    assert "TotallyWrongSecret" not in output and wrong not in output
    assert "Traceback" not in output
