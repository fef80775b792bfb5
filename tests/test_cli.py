"""The CLI as a user meets it: every bad input is one line, exit 2, nothing written."""

import json
import socket
import subprocess
from pathlib import Path

import pytest
import yaml
from helpers import BIN, REPO, assert_one_line_error, run_pwgen
from pw_server import DEFAULT_KEY, PWServer, basic_auth

GOOD_SITES = """\
sites:
  - label: cluster_a
    scheduler: slurm
    host: 10.0.0.5
    user: alice
    partition: compute
    proxy_jump: bob@bastion
    identity_file: /keys/id_ed25519
  - label: pbs_b
    scheduler: pbspro
    host: pbs.example.org
    executor: mpi
  - label: local
    scheduler: local
"""

BAD_SITES = {
    "yaml_syntax": ("sites:\n  - label: a\n   scheduler: local\n", "sites.yaml:3:"),
    "unknown_key": ("sites:\n  - {label: a, scheduler: local, colour: red}\n", "unknown key"),
    "wrong_type": ("sites:\n  - {label: a, scheduler: local, max_blocks: many}\n", "max_blocks"),
    "duplicate_label": (
        "sites:\n  - {label: a, scheduler: local}\n  - {label: a, scheduler: local}\n",
        "duplicate label 'a'",
    ),
    "invalid_label": ("sites:\n  - {label: a-b, scheduler: local}\n", "'a-b' is not a valid"),
    "unknown_scheduler": ("sites:\n  - {label: a, scheduler: lsf}\n", "sites[0].scheduler"),
    "unknown_executor": (
        "sites:\n  - {label: a, scheduler: local, executor: dask}\n",
        "sites[0].executor",
    ),
}


def _files(directory: Path) -> set[Path]:
    return set(directory.rglob("*"))


@pytest.mark.parametrize("case", sorted(BAD_SITES))
@pytest.mark.parametrize("command", ["inventory", "config", "run"])
def test_bad_sites_file(tmp_path: Path, case: str, command: str) -> None:
    text, needle = BAD_SITES[case]
    (tmp_path / "sites.yaml").write_text(text)
    (tmp_path / "wf.py").write_text("print('never')\n")
    before = _files(tmp_path)
    args = {
        "inventory": ["inventory", "--from", "sites.yaml", "-o", "inv.yml"],
        "config": ["config", "-o", "parsl_config.py"],
        "run": ["run", "wf.py"],
    }[command]
    result = run_pwgen(*args, cwd=tmp_path)
    assert_one_line_error(result, "sites.yaml", needle)
    assert _files(tmp_path) == before, "a failed command wrote files"


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["config", "--sites", "missing.yaml"], "missing.yaml: sites file not found"),
        (["run", "wf.py", "--sites", "missing.yaml"], "missing.yaml: sites file not found"),
        (["inventory", "--from", "missing.yaml"], "missing.yaml: sites file not found"),
        (["inventory", "--from", "sites.yaml", "-o", "no/such/dir/inv.yml"], "does not exist"),
        (["config", "-o", "no/such/dir/parsl_config.py"], "no/such/dir does not exist"),
        (["run", "nowhere.py"], "nowhere.py: workflow script not found"),
        (["run", "broken.py"], "broken.py:1: not valid Python"),
        (["run"], "Missing argument 'workflow'"),
        (["frobnicate"], "No such command 'frobnicate'"),
        (["config", "--colour"], "No such option: --colour"),
    ],
)
def test_bad_arguments(tmp_path: Path, args: list[str], needle: str) -> None:
    (tmp_path / "sites.yaml").write_text("sites:\n  - {label: local, scheduler: local}\n")
    (tmp_path / "wf.py").write_text("print('never')\n")
    (tmp_path / "broken.py").write_text("def (:\n")
    before = _files(tmp_path)
    assert_one_line_error(run_pwgen(*args, cwd=tmp_path), needle)
    assert _files(tmp_path) == before


def test_remote_site_config_needs_provisioning(tmp_path: Path) -> None:
    (tmp_path / "sites.yaml").write_text(GOOD_SITES)
    result = run_pwgen("config", cwd=tmp_path)
    assert_one_line_error(result, "site 'cluster_a' (slurm)", "pwgen provision")
    assert not (tmp_path / "parsl_config.py").exists()


def test_config_overwrites_atomically(tmp_path: Path) -> None:
    (tmp_path / "sites.yaml").write_text("sites:\n  - {label: local, scheduler: local}\n")
    (tmp_path / "parsl_config.py").write_text("old")
    result = run_pwgen("config", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "HighThroughputExecutor" in (tmp_path / "parsl_config.py").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["parsl_config.py", "sites.yaml"]


def test_inventory_from_file_is_what_ansible_reads(tmp_path: Path) -> None:
    (tmp_path / "sites.yaml").write_text(GOOD_SITES)
    (tmp_path / "inventory").mkdir()
    result = run_pwgen("inventory", "--from", "sites.yaml", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report == {
        "inventory": "inventory/pwgen.yml",
        "sites": ["cluster_a", "pbs_b", "local"],
        "skipped": [],
    }

    listed = subprocess.run(
        [str(BIN / "ansible-inventory"), "-i", "inventory/pwgen.yml", "--list"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": f"{BIN}:/usr/bin:/bin", "ANSIBLE_CONFIG": str(REPO / "ansible.cfg")},
    )
    inventory = json.loads(listed.stdout)
    hostvars = inventory["_meta"]["hostvars"]
    assert sorted(inventory["sites"]["hosts"]) == ["cluster_a", "local", "pbs_b"]
    assert inventory["scheduler_slurm"]["hosts"] == ["cluster_a"]
    assert inventory["scheduler_pbspro"]["hosts"] == ["pbs_b"]
    assert inventory["executor_mpi"]["hosts"] == ["pbs_b"]
    assert sorted(inventory["executor_htex"]["hosts"]) == ["cluster_a", "local"]
    a = hostvars["cluster_a"]
    assert (a["ansible_host"], a["ansible_user"], a["ansible_port"]) == ("10.0.0.5", "alice", 22)
    assert a["ansible_ssh_common_args"] == "-o ProxyJump=bob@bastion"
    assert a["ansible_ssh_private_key_file"] == "/keys/id_ed25519"
    assert (a["pwgen_scheduler"], a["pwgen_partition"]) == ("slurm", "compute")
    assert a["pwgen_env_method"] == "wheelhouse" and a["pwgen_walltime"] == "01:00:00"
    assert hostvars["local"]["ansible_connection"] == "local"
    assert "ansible_user" not in hostvars["pbs_b"]


def test_inventory_table_output(tmp_path: Path) -> None:
    (tmp_path / "sites.yaml").write_text(GOOD_SITES)
    result = run_pwgen("inventory", "--from", "sites.yaml", "-o", "inv.yml", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "cluster_a" in result.stdout and "this machine" in result.stdout
    written = yaml.safe_load((tmp_path / "inv.yml").read_text())
    assert set(written["all"]["children"]["sites"]["hosts"]) == {"cluster_a", "pbs_b", "local"}


def test_help_everywhere(tmp_path: Path) -> None:
    for args in ([], ["inventory"], ["config"], ["run"]):
        result = run_pwgen(*args, "--help", cwd=tmp_path)
        assert result.returncode == 0 and "Usage" in result.stdout, (args, result.stderr)


# ---------------------------------------------------------------- --from pw


def test_inventory_from_pw_writes_usable_clusters(tmp_path: Path, pw_server: PWServer) -> None:
    result = run_pwgen(
        "inventory", "--from", "pw", "-o", "inv.yml", "--json", cwd=tmp_path, env=pw_server.env()
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["sites"] == ["gpu_cluster_v2", "pbs_west"]
    assert {s["name"] for s in report["skipped"]} == {"old-cluster", "bare-vm"}
    hosts = yaml.safe_load((tmp_path / "inv.yml").read_text())["all"]["children"]["sites"]["hosts"]
    assert hosts["gpu_cluster_v2"]["ansible_host"] == "192.0.2.10"
    assert hosts["gpu_cluster_v2"]["ansible_user"] == "alice"
    assert hosts["pbs_west"]["pwgen_scheduler"] == "pbspro"
    assert pw_server.requests[0].authorization == basic_auth(pw_server.api_key)


def test_inventory_from_pw_warns_about_skipped_clusters(
    tmp_path: Path, pw_server: PWServer
) -> None:
    result = run_pwgen(
        "inventory", "--from", "pw", "-o", "inv.yml", cwd=tmp_path, env=pw_server.env()
    )
    assert result.returncode == 0, result.stderr
    (warning,) = result.stderr.strip().splitlines()
    assert warning.startswith("pwgen: warning: skipped 2 cluster(s): old-cluster")
    assert "gpu_cluster_v2" in result.stdout


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


PW_FAILURES: dict[str, tuple[dict[str, object], str]] = {
    "bad_key": ({"api_key": "pwt_the_right_one.secret"}, "rejected the key (HTTP 401)"),
    "forbidden": ({"status": 403}, "rejected the key (HTTP 403)"),
    "server_error": ({"fail_first": 99}, "answered HTTP 503"),
    "malformed_json": ({"malformed": True}, "malformed JSON"),
    "no_usable_cluster": (
        {"clusters": [{"name": "down", "status": "off", "schedulerType": "slurm"}]},
        "no usable cluster",
    ),
    "label_collision": (
        {
            "clusters": [
                {"name": "a-b", "status": "on", "schedulerType": "slurm", "ipAddress": "192.0.2.1"},
                {"name": "a.b", "status": "on", "schedulerType": "slurm", "ipAddress": "192.0.2.2"},
            ]
        },
        "both become site label 'a_b'",
    ),
}


@pytest.mark.parametrize("case", sorted(PW_FAILURES))
def test_inventory_from_pw_failures(tmp_path: Path, pw_server: PWServer, case: str) -> None:
    settings, needle = PW_FAILURES[case]
    env = pw_server.env()  # the client keeps the default key, whatever the server wants
    for name, value in settings.items():
        setattr(pw_server, name, value)
    result = run_pwgen("inventory", "--from", "pw", "-o", "inv.yml", cwd=tmp_path, env=env)
    assert_one_line_error(result, needle)
    assert DEFAULT_KEY not in result.stderr
    assert not (tmp_path / "inv.yml").exists()


def test_inventory_from_pw_without_key(tmp_path: Path) -> None:
    result = run_pwgen("inventory", "--from", "pw", cwd=tmp_path)
    assert_one_line_error(result, "PW_API_KEY is not set")


def test_inventory_from_pw_unreachable(tmp_path: Path) -> None:
    env = {"PW_API_KEY": DEFAULT_KEY, "PW_PLATFORM_HOST": f"http://127.0.0.1:{_closed_port()}"}
    result = run_pwgen("inventory", "--from", "pw", cwd=tmp_path, env=env)
    assert_one_line_error(result, "cannot reach PW API at http://127.0.0.1:")
    assert not (tmp_path / "inventory").exists()


def test_flux_site_cannot_share_a_run(tmp_path: Path) -> None:
    (tmp_path / "sites.yaml").write_text(
        "sites:\n"
        "  - {label: fluxy, scheduler: slurm, host: 192.0.2.1, executor: flux}\n"
        "  - {label: local, scheduler: local}\n"
    )
    (tmp_path / "wf.py").write_text("print('never')\n")
    result = run_pwgen("run", "wf.py", cwd=tmp_path)
    assert_one_line_error(
        result, "site 'fluxy' uses executor flux", "cannot share a run with local"
    )
    assert not (tmp_path / ".pwgen").exists()
